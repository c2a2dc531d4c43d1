#!/usr/bin/env bash
# `npm run test:install` (issue 21.2): the amd64 release installed as an installer would, on a
# fresh Debian bookworm root made by mmdebstrap from Debian's packages (with systemd, not
# running: a chroot), with this machine's Node.js 20 copied to /usr/local/bin (as the nodejs.org
# tarball puts it). Both forms of the release, each in its own copy of the fresh root:
# - the Debian package: dpkg -i with the unit enabled although systemd does not run (an image
#   prepared offline), no native file of another platform in it (deploy/native-check.ts and a
#   look at every prebuilds/ folder), its native addons loaded and used (deploy/load-addons.ts),
#   `oti doctor`, a provisioning bundle made outside with the real `oti site init` and
#   `oti gateway enroll` dropped on the boot partition, the unit's own ExecStartPre and ExecStart
#   lines (read from the installed unit; no systemd in a chroot) with its Environment, /health
#   answered on the host's loopback, `oti lock enroll` through the API, an upgrade to a rebuilt
#   package of another version (dpkg -i again) with the configuration and data kept, the chain
#   intact (`oti verify`) and the new version reported alike by `oti --version`, RELEASE and
#   /status; then remove (the unit masked), install again (enabled again), an upgrade after
#   `systemctl disable` (left disabled), and purge (the unit's links gone, the data kept);
# - the tarball: deploy/install.sh run under umask 077, the same bundle, start, doctor and lock,
#   an upgrade with install.sh from the rebuilt tarball, and install.sh --rollback, each with the
#   chain intact and the version of the release in use reported.
# The arm64 package under emulation is deploy/test-install-arm64.sh (npm run test:install:arm64).
# Runs as root; everything happens in a private mount namespace under a temporary folder that is
# removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
[ "$(id -u)" -eq 0 ] || { echo "test-install: run as root" >&2; exit 2; }
if [ -z "${OTI_IN_NS:-}" ]; then exec env OTI_IN_NS=1 unshare --mount --propagation private "$0" "$@"; fi

WORK="$(mktemp -d /tmp/oti-test-install-XXXXXX)"
# shellcheck source=deploy/test-install-lib.sh
. "$ROOT/deploy/test-install-lib.sh"
trap 'cleanup_roots; rm -rf "$WORK"' EXIT

VERSION="$(node -p 'require("./package.json").version')"
NEW="$VERSION+rebuild1"
export OTI_RELEASE_DEB_COMPRESSION=gzip
step "release: amd64 $VERSION and the rebuilt $NEW"
OTI_RELEASE_ARCHS=amd64 ./deploy/release.sh >/dev/null
cp "release/oti-gateway_${VERSION}_amd64.deb" "release/oti-gateway-$VERSION-linux-amd64.tar.gz" "$WORK/"
OTI_RELEASE_ARCHS=amd64 OTI_RELEASE_VERSION="$NEW" ./deploy/release.sh >/dev/null
cp "release/oti-gateway_${NEW}_amd64.deb" "release/oti-gateway-$NEW-linux-amd64.tar.gz" "$WORK/"
ls -l "$WORK"/*.deb "$WORK"/*.tar.gz | awk '{print $5, $9}'
grep -v '^ok' <(tar -xzOf "$WORK/oti-gateway-$VERSION-linux-amd64.tar.gz" oti-gateway/NATIVE.txt) || true

step "mmdebstrap bookworm (apt variant, with systemd) into $WORK/root, copied to $WORK/root-tar"
make_root "$WORK/root" amd64 --include=systemd
install -m 0755 "$(readlink -f "$(command -v node)")" "$WORK/root/usr/local/bin/node"
cp -a "$WORK/root" "$WORK/root-tar"
make_bundle

######## The Debian package
R="$WORK/root"
mount_root "$R"
in_root node --version

step "dpkg -i oti-gateway_${VERSION}_amd64.deb"
cp "$WORK/oti-gateway_${VERSION}_amd64.deb" "$R/tmp/"
in_root dpkg -i "/tmp/oti-gateway_${VERSION}_amd64.deb"
in_root sh -c 'command -v oti; oti --version; id oti; stat -c "%n %U %a" /var/lib/oti-gateway /etc/oti-gateway/config.yaml'
[ "$(stat -c %a "$R/var/lib/oti-gateway")" = 700 ] || fail "the data folder is not 0700"
# Enabled offline, as in an image being prepared: systemd does not run in the chroot.
[ -L "$(wants_link)" ] || fail "dpkg -i did not enable the unit: no $(wants_link)"
check_version "$VERSION" /usr/lib/oti-gateway

step "no native file of another platform in the package (deploy/native-check.ts and prebuilds/)"
check_native "$R/usr/lib/oti-gateway" amd64

step "the package's native addons, loaded and used by the root's Node.js (deploy/load-addons.ts)"
mkdir -p "$R/tmp/oti-check"
cp dist/deploy/load-addons.js dist/deploy/elf.js "$R/tmp/oti-check/"
echo '{"type":"module"}' > "$R/tmp/oti-check/package.json"
in_root node /tmp/oti-check/load-addons.js /usr/lib/oti-gateway || fail "an addon did not load"

step "provisioning bundle made outside (oti site init, oti gateway enroll) on the boot partition"
put_bundle
# The gateway's ports on the host's loopback: written into the conffile, which the upgrade keeps.
test_config /etc/oti-gateway/config.yaml
UNIT=/lib/systemd/system/oti-gateway.service

step "start from the unit's lines"
start_gateway "$UNIT"
[ ! -e "$R/boot/firmware/oti-bundle.json" ] || fail "the bundle was left on the boot partition"
in_root ls -l /var/lib/oti-gateway

step "oti doctor (as oti)"
doctor_as_oti

step "oti lock enroll from outside, through the gateway's API"
lock_key() { node -e 'const k=require("crypto").generateKeyPairSync("ed25519").publicKey.export({format:"jwk"});console.log(Buffer.from(k.x,"base64url").toString("hex"))'; }
node dist/provisioning/cli.js lock enroll --site-dir "$WORK/site" --id front-door --key "$(lock_key)" --yes --api "http://127.0.0.1:$API_PORT"

step "oti verify while it runs"
before="$(verify_line)"; echo "$before"
echo "$before" | grep -q " 2 entries " || fail "the chain should hold the enrolment and the lock: $before"
key_before="$(sha256sum "$R/var/lib/oti-gateway/gateway.key")"
conf_before="$(sha256sum "$R/etc/oti-gateway/config.yaml")"

step "upgrade: dpkg -i oti-gateway_${NEW}_amd64.deb"
stop_gateway
cp "$WORK/oti-gateway_${NEW}_amd64.deb" "$R/tmp/"
in_root dpkg -i "/tmp/oti-gateway_${NEW}_amd64.deb"
in_root dpkg-query -W oti-gateway
[ "$(sha256sum "$R/etc/oti-gateway/config.yaml")" = "$conf_before" ] || fail "the upgrade changed the configuration"
[ "$(sha256sum "$R/var/lib/oti-gateway/gateway.key")" = "$key_before" ] || fail "the upgrade changed the gateway key"
[ -L "$(wants_link)" ] || fail "the upgrade disabled the unit"
start_gateway "$UNIT"
check_version "$NEW" /usr/lib/oti-gateway
after="$(verify_line)"; echo "$after"
[ "$(echo "$before" | head -1)" = "$(echo "$after" | head -1)" ] || fail "the chain changed across the upgrade"
stop_gateway
echo "the configuration, the key and the chain are intact after the upgrade"

step "remove, then install again: the unit is masked while removed, enabled again after"
in_root dpkg --remove oti-gateway
[ "$(readlink "$R/etc/systemd/system/oti-gateway.service")" = /dev/null ] || fail "remove did not mask the unit"
in_root dpkg -i "/tmp/oti-gateway_${NEW}_amd64.deb"
[ ! -e "$R/etc/systemd/system/oti-gateway.service" ] || fail "the reinstall left the unit masked"
[ -L "$(wants_link)" ] || fail "the reinstall did not enable the unit again"

step "an upgrade keeps the administrator's systemctl disable"
in_root systemctl disable oti-gateway
in_root dpkg -i "/tmp/oti-gateway_${NEW}_amd64.deb"
[ ! -e "$(wants_link)" ] || fail "the upgrade enabled a unit the administrator had disabled"
in_root systemctl enable oti-gateway

step "purge removes the unit's links and keeps the data folder"
in_root dpkg --purge oti-gateway
[ ! -L "$(wants_link)" ] || fail "purge left $(wants_link)"
[ ! -L "$R/etc/systemd/system/oti-gateway.service" ] || fail "purge left the unit masked"
[ -f "$R/var/lib/oti-gateway/gateway.key" ] || fail "purge deleted the data folder"
echo "kept: $(ls "$R/var/lib/oti-gateway" | tr '\n' ' ')"

######## The tarball and deploy/install.sh, in a fresh copy of the root
R="$WORK/root-tar"
mount_root "$R"
UNIT=/etc/systemd/system/oti-gateway.service
current() { basename "$(readlink "$R/opt/oti-gateway/current")"; }
install_tarball() { # VERSION: unpack its tarball in /tmp/<VERSION> and run its deploy/install.sh
  mkdir -p "$R/tmp/$1"
  tar -C "$R/tmp/$1" -xzf "$WORK/oti-gateway-$1-linux-amd64.tar.gz"
  in_root sh -c "umask 077; /tmp/$1/oti-gateway/deploy/install.sh"
}

step "tarball: deploy/install.sh from oti-gateway-$VERSION-linux-amd64.tar.gz (umask 077)"
install_tarball "$VERSION"
in_root sh -c 'command -v oti; ls -l /usr/local/bin/oti /opt/oti-gateway; id oti; stat -c "%n %U %a" /opt/oti-gateway/releases/* /var/lib/oti-gateway /etc/oti-gateway/config.yaml /etc/systemd/system/oti-gateway.service'
[ "$(stat -c %a "$R/var/lib/oti-gateway")" = 700 ] || fail "the data folder is not 0700"
[ -L "$R/etc/systemd/system/multi-user.target.wants/oti-gateway.service" ] || fail "the unit is not enabled"
grep -q "^ExecStart=/opt/oti-gateway/current/bin/oti-gateway$" "$R$UNIT" || fail "the unit does not start the current release"
check_version "$VERSION" /opt/oti-gateway/current
check_native "$R$(readlink "$R/opt/oti-gateway/current")" amd64

step "tarball: bundle, start from the unit's lines, oti doctor, oti lock enroll"
put_bundle
test_config /etc/oti-gateway/config.yaml
start_gateway "$UNIT"
[ ! -e "$R/boot/firmware/oti-bundle.json" ] || fail "the bundle was left on the boot partition"
doctor_as_oti
node dist/provisioning/cli.js lock enroll --site-dir "$WORK/site" --id back-door --key "$(lock_key)" --yes --api "http://127.0.0.1:$API_PORT"
before="$(verify_line)"; echo "$before"
echo "$before" | grep -q " 2 entries " || fail "the chain should hold the enrolment and the lock: $before"
conf_before="$(sha256sum "$R/etc/oti-gateway/config.yaml")"
old="$(current)"

step "tarball: upgrade with install.sh from oti-gateway-$NEW-linux-amd64.tar.gz"
stop_gateway
install_tarball "$NEW"
echo "current: $(current), previous: $(basename "$(readlink "$R/opt/oti-gateway/previous")")"
case "$(current)" in "$NEW"-*) ;; *) fail "current is not the new release: $(current)" ;; esac
[ "$(basename "$(readlink "$R/opt/oti-gateway/previous")")" = "$old" ] || fail "previous is not the release upgraded from"
[ "$(sha256sum "$R/etc/oti-gateway/config.yaml")" = "$conf_before" ] || fail "the upgrade changed the configuration"
start_gateway "$UNIT"
check_version "$NEW" /opt/oti-gateway/current
after="$(verify_line)"; echo "$after"
[ "$(echo "$before" | head -1)" = "$(echo "$after" | head -1)" ] || fail "the chain changed across the upgrade"
stop_gateway

step "tarball: install.sh --rollback"
in_root /opt/oti-gateway/current/deploy/install.sh --rollback
[ "$(current)" = "$old" ] || fail "the rollback did not switch back to $old: $(current)"
start_gateway "$UNIT"
check_version "$VERSION" /opt/oti-gateway/current
after="$(verify_line)"; echo "$after"
[ "$(echo "$before" | head -1)" = "$(echo "$after" | head -1)" ] || fail "the chain changed across the rollback"
stop_gateway
echo "the tarball installed, upgraded and rolled back with the configuration and the chain intact"
echo "test-install: ok"
