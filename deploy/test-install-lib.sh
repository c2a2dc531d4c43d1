# Shared by the install tests (deploy/test-install.sh, deploy/test-install-arm64.sh); sourced by
# bash, not run. The caller sets ROOT (the checkout) and WORK (a temporary folder it removes), runs
# in a private mount namespace, and calls cleanup_roots from its EXIT trap. R is the root in use.
#   make_root DIR ARCH [mmdebstrap options]   a fresh Debian bookworm root (apt variant)
#   mount_root DIR                            /proc and /dev inside it
#   in_root CMD...                            CMD as root in $R with a clean environment
#   make_bundle                               $WORK/site and $WORK/oti-bundle.json (the real CLI)
#   test_config FILE                          the gateway's ports (API_PORT, BROKER_PORT) on the
#                                             host's loopback, appended to FILE inside $R
#   start_gateway UNIT                        the unit's ExecStartPre (as root) and ExecStart (as
#                                             its User=) with its Environment, until /health answers
#   stop_gateway, doctor_as_oti, verify_line
#   check_native TREE ARCH                    no native file of another platform in the release
#                                             TREE (a path on the host)
#   check_version VERSION TREE                `oti --version`, TREE's RELEASE and, while the
#                                             gateway runs, /status all report VERSION
#   wants_link                                the unit's multi-user.target.wants link in $R

GW_PID=""
MOUNTED=()
# The wait for /health, in 0.2 s steps: emulated roots start an order of magnitude slower.
HEALTH_STEPS="${HEALTH_STEPS:-300}"

step() { echo "== $*"; }
fail() { echo "$(basename "$0"): FAILED: $*" >&2; exit 1; }

cleanup_roots() {
  [ -z "$GW_PID" ] || kill "$GW_PID" 2>/dev/null || true
  local m
  for m in "${MOUNTED[@]}"; do umount -l "$m" 2>/dev/null || true; done
}

make_root() { # DIR ARCH [mmdebstrap options]
  local dir="$1" arch="$2"
  shift 2
  mmdebstrap --quiet --variant=apt --arch="$arch" "$@" bookworm "$dir"
}

mount_root() {
  mount -t proc proc "$1/proc" && MOUNTED+=("$1/proc")
  mount --bind /dev "$1/dev" && MOUNTED+=("$1/dev")
}

in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
as_oti() { chroot --userspec=oti:oti "$R" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/var/lib/oti-gateway "$@"; }

make_bundle() {
  export OTI_PASSPHRASE="install test site passphrase"
  node "$ROOT/dist/provisioning/cli.js" site init --site install-test --out "$WORK/site" >/dev/null
  node "$ROOT/dist/provisioning/cli.js" gateway enroll --site-dir "$WORK/site" --id gw-fresh --expires 1d --out "$WORK/oti-bundle.json" >/dev/null
}

put_bundle() {
  mkdir -p "$R/boot/firmware"
  cp "$WORK/oti-bundle.json" "$R/boot/firmware/oti-bundle.json"
}

test_config() { # FILE [ble: true|false]
  local ports
  ports="$(node -e 'const n=require("net");const p=[];let k=2;for(let i=0;i<2;i++){const s=n.createServer().listen(0,"127.0.0.1",()=>{p.push(s.address().port);s.close();if(--k===0)console.log(p.join(" "))})}')"
  read -r API_PORT BROKER_PORT <<<"$ports"
  cat >> "$R$1" <<CONF
api:
  port: $API_PORT
broker:
  host: 127.0.0.1
  port: $BROKER_PORT
ble:
  enabled: ${2:-false}
discovery:
  enabled: false
CONF
}

start_gateway() { # UNIT (a path inside $R)
  local unit="$R$1" pre start user envs=() e
  unit_value() { sed -n "s/^$1=//p" "$unit"; }
  pre="$(unit_value ExecStartPre)"; pre="${pre#+}"
  start="$(unit_value ExecStart)"; user="$(unit_value User)"
  while read -r e; do envs+=("$e"); done < <(unit_value Environment)
  echo "ExecStartPre=+$pre"
  in_root env "${envs[@]}" $pre
  echo "ExecStart=$start (as $user)"
  chroot --userspec="$user:$user" "$R" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/var/lib/oti-gateway "${envs[@]}" $start > "$WORK/gateway.log" 2>&1 &
  GW_PID=$!
  local i t0=$SECONDS
  for i in $(seq 1 "$HEALTH_STEPS"); do
    if curl -fsS "http://127.0.0.1:$API_PORT/health" -o "$WORK/health.json" 2>/dev/null; then
      echo "curl /health: $(cat "$WORK/health.json") (after $((SECONDS - t0)) s)"; return 0
    fi
    kill -0 "$GW_PID" 2>/dev/null || { tail -20 "$WORK/gateway.log"; fail "the gateway exited"; }
    sleep 0.2
  done
  tail -20 "$WORK/gateway.log"; fail "no answer on /health"
}

stop_gateway() { kill -TERM "$GW_PID"; wait "$GW_PID" || true; GW_PID=""; }

doctor_as_oti() { # [doctor options]: exit 0 or 1 (checks failed) is a run; more is a failure
  local rc=0
  as_oti oti doctor --config /etc/oti-gateway/config.yaml "$@" || rc=$?
  [ "$rc" -le 1 ] || fail "oti doctor did not run (exit $rc)"
}

verify_line() {
  in_root oti verify --data /var/lib/oti-gateway --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);if(!v.ok)process.exit(1);console.log(v.chains.map(c=>`${c.origin} ${c.report.entries} entries root ${c.report.root}`).join("\n"))})'
}

check_native() { # TREE ARCH
  local tree="$1" arch="$2" node_arch left
  node_arch="$(case "$2" in amd64) echo x64 ;; arm64) echo arm64 ;; armhf) echo arm ;; esac)"
  node "$ROOT/dist/deploy/native-check.js" "$tree" "$arch" > "$WORK/native.txt" || { cat "$WORK/native.txt"; fail "native-check: the release holds native files of another platform"; }
  # Independently of native-check: under any prebuilds/, only linux-<arch> addons for glibc.
  left="$({
    find "$tree/node_modules" -path '*/prebuilds/*' -type f | grep -Ev "/prebuilds/linux-$node_arch/[^/]+\.node\$"
    find "$tree/node_modules" -path '*/prebuilds/*' -type f -name '*musl*'
  } || true)"
  [ -z "$left" ] || { echo "$left"; fail "prebuilds of other platforms are left in $tree"; }
  echo "native files: $(grep -c . "$WORK/native.txt"), all for linux-$node_arch"
}

check_version() { # VERSION TREE (inside $R)
  local got
  got="$(as_oti oti --version)"
  [ "$got" = "oti $1" ] || fail "oti --version says '$got', not 'oti $1'"
  got="$(in_root cut -d' ' -f2 "$2/RELEASE")"
  [ "$got" = "$1" ] || fail "$2/RELEASE says $got, not $1"
  if [ -n "$GW_PID" ]; then
    got="$(curl -fsS "http://127.0.0.1:$API_PORT/status" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).version))')"
    [ "$got" = "$1" ] || fail "/status says version $got, not $1"
  fi
  echo "version $1: oti --version, RELEASE${GW_PID:+ and /status}"
}

wants_link() { echo "$R/etc/systemd/system/multi-user.target.wants/oti-gateway.service"; }
