#!/usr/bin/env bash
# `npm run test:install` (issue 21.2): the amd64 Debian package installed as an installer would,
# on a fresh Debian bookworm root made by mmdebstrap from Debian's packages, with this machine's
# Node.js 20 copied to /usr/local/bin (as the nodejs.org tarball puts it). Inside it: dpkg -i,
# `oti doctor`, a provisioning bundle made outside with the real `oti site init` and
# `oti gateway enroll` dropped on the boot partition, the unit's own ExecStartPre and ExecStart
# lines (read from the installed unit; no systemd in a chroot) with its Environment, /health
# answered on the host's loopback, an upgrade to a rebuilt package (dpkg -i again) with the
# configuration and data kept and the chain intact (`oti verify`). Then, where qemu-user and
# binfmt allow, the arm64 package's `oti --version` under emulation. Runs as root; everything
# happens in a private mount namespace under a temporary folder that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
[ "$(id -u)" -eq 0 ] || { echo "test-install: run as root" >&2; exit 2; }
if [ -z "${OTI_IN_NS:-}" ]; then exec env OTI_IN_NS=1 unshare --mount --propagation private "$0" "$@"; fi

WORK="$(mktemp -d /tmp/oti-test-install-XXXXXX)"
R="$WORK/root"
GW_PID=""
cleanup() {
  [ -z "$GW_PID" ] || kill "$GW_PID" 2>/dev/null || true
  for m in "$R/proc" "$R/dev"; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
step() { echo "== $*"; }
fail() { echo "test-install: FAILED: $*" >&2; exit 1; }

VERSION="$(node -p 'require("./package.json").version')"
export OTI_RELEASE_DEB_COMPRESSION=gzip
step "release: amd64 $VERSION and the rebuilt $VERSION+rebuild1"
OTI_RELEASE_ARCHS=amd64 ./deploy/release.sh >/dev/null
cp release/oti-gateway_${VERSION}_amd64.deb "$WORK/"
OTI_RELEASE_ARCHS=amd64 OTI_RELEASE_VERSION="$VERSION+rebuild1" ./deploy/release.sh >/dev/null
cp "release/oti-gateway_${VERSION}+rebuild1_amd64.deb" "$WORK/"
ls -l "$WORK"/*.deb | awk '{print $5, $9}'

step "mmdebstrap bookworm (apt variant) into $R"
mmdebstrap --quiet --variant=apt bookworm "$R"
install -m 0755 "$(readlink -f "$(command -v node)")" "$R/usr/local/bin/node"
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
in_root node --version

step "dpkg -i oti-gateway_${VERSION}_amd64.deb"
cp "$WORK/oti-gateway_${VERSION}_amd64.deb" "$R/tmp/"
in_root dpkg -i "/tmp/oti-gateway_${VERSION}_amd64.deb"
in_root sh -c 'command -v oti; oti --version; id oti; stat -c "%n %U %a" /var/lib/oti-gateway /etc/oti-gateway/config.yaml'
[ "$(stat -c %a "$R/var/lib/oti-gateway")" = 700 ] || fail "the data folder is not 0700"

step "provisioning bundle made outside: oti site init, oti gateway enroll"
export OTI_PASSPHRASE="install test site passphrase"
node dist/provisioning/cli.js site init --site install-test --out "$WORK/site" >/dev/null
node dist/provisioning/cli.js gateway enroll --site-dir "$WORK/site" --id gw-fresh --expires 1d --out "$WORK/oti-bundle.json" >/dev/null
mkdir -p "$R/boot/firmware"
cp "$WORK/oti-bundle.json" "$R/boot/firmware/oti-bundle.json"

# The gateway's ports on the host's loopback: written into the conffile, which the upgrade keeps.
ports="$(node -e 'const n=require("net");const p=[];let k=2;for(let i=0;i<2;i++){const s=n.createServer().listen(0,"127.0.0.1",()=>{p.push(s.address().port);s.close();if(--k===0)console.log(p.join(" "))})}')"
read -r API_PORT BROKER_PORT <<<"$ports"
cat >> "$R/etc/oti-gateway/config.yaml" <<CONF
api:
  port: $API_PORT
broker:
  host: 127.0.0.1
  port: $BROKER_PORT
ble:
  enabled: false
discovery:
  enabled: false
CONF

UNIT="$R/lib/systemd/system/oti-gateway.service"
unit_value() { sed -n "s/^$1=//p" "$UNIT"; }
start_gateway() { # the unit's ExecStartPre (as root) and ExecStart (as User=) with its Environment
  local pre start user envs=()
  pre="$(unit_value ExecStartPre)"; pre="${pre#+}"
  start="$(unit_value ExecStart)"; user="$(unit_value User)"
  while read -r e; do envs+=("$e"); done < <(unit_value Environment)
  echo "ExecStartPre=+$pre"
  in_root env "${envs[@]}" $pre
  echo "ExecStart=$start (as $user)"
  chroot --userspec="$user:$user" "$R" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/var/lib/oti-gateway "${envs[@]}" $start > "$WORK/gateway.log" 2>&1 &
  GW_PID=$!
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$API_PORT/health" -o "$WORK/health.json" 2>/dev/null; then
      echo "curl /health: $(cat "$WORK/health.json")"; return 0
    fi
    kill -0 "$GW_PID" 2>/dev/null || { tail -20 "$WORK/gateway.log"; fail "the gateway exited"; }
    sleep 0.2
  done
  tail -20 "$WORK/gateway.log"; fail "no answer on /health"
}
stop_gateway() { kill -TERM "$GW_PID"; wait "$GW_PID" || true; GW_PID=""; }

step "start from the unit's lines"
start_gateway
[ ! -e "$R/boot/firmware/oti-bundle.json" ] || fail "the bundle was left on the boot partition"
in_root ls -l /var/lib/oti-gateway

step "oti doctor (as oti)"
set +e
chroot --userspec=oti:oti "$R" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/var/lib/oti-gateway oti doctor --config /etc/oti-gateway/config.yaml
doctor=$?
set -e
[ "$doctor" -le 1 ] || fail "oti doctor did not run (exit $doctor)"

step "oti lock enroll from outside, through the gateway's API"
lock_key="$(node -e 'const k=require("crypto").generateKeyPairSync("ed25519").publicKey.export({format:"jwk"});console.log(Buffer.from(k.x,"base64url").toString("hex"))')"
node dist/provisioning/cli.js lock enroll --site-dir "$WORK/site" --id front-door --key "$lock_key" --yes --api "http://127.0.0.1:$API_PORT"

verify_line() { in_root oti verify --data /var/lib/oti-gateway --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);if(!v.ok)process.exit(1);console.log(v.chains.map(c=>`${c.origin} ${c.report.entries} entries root ${c.report.root}`).join("\n"))})'; }
step "oti verify while it runs"
before="$(verify_line)"; echo "$before"
echo "$before" | grep -q " 2 entries " || fail "the chain should hold the enrolment and the lock: $before"
key_before="$(sha256sum "$R/var/lib/oti-gateway/gateway.key")"
conf_before="$(sha256sum "$R/etc/oti-gateway/config.yaml")"

step "upgrade: dpkg -i oti-gateway_${VERSION}+rebuild1_amd64.deb"
stop_gateway
cp "$WORK/oti-gateway_${VERSION}+rebuild1_amd64.deb" "$R/tmp/"
in_root dpkg -i "/tmp/oti-gateway_${VERSION}+rebuild1_amd64.deb"
in_root dpkg-query -W oti-gateway
[ "$(sha256sum "$R/etc/oti-gateway/config.yaml")" = "$conf_before" ] || fail "the upgrade changed the configuration"
[ "$(sha256sum "$R/var/lib/oti-gateway/gateway.key")" = "$key_before" ] || fail "the upgrade changed the gateway key"
start_gateway
after="$(verify_line)"; echo "$after"
[ "$(echo "$before" | head -1)" = "$(echo "$after" | head -1)" ] || fail "the chain changed across the upgrade"
stop_gateway
echo "the configuration, the key and the chain are intact after the upgrade"

step "remove and purge keep the data folder"
in_root dpkg --purge oti-gateway
[ -f "$R/var/lib/oti-gateway/gateway.key" ] || fail "purge deleted the data folder"
echo "kept: $(ls "$R/var/lib/oti-gateway" | tr '\n' ' ')"

step "arm64 under emulation"
if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64-static ]; then
  echo "binfmt has qemu-aarch64, but the arm64 package needs an arm64 node binary in the root, and none is available offline: not run"
else
  echo "no qemu-aarch64 binfmt handler on this machine: not run"
fi
echo "test-install: ok"
