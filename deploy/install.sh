#!/bin/sh
# Installs or upgrades the OTI gateway from a release tarball (docs/INSTALL.md §3b; the Debian
# package is the usual way, §3a).
#
#   sudo oti-gateway/deploy/install.sh            install this unpacked release
#                                                 (oti-gateway-<version>-linux-<arch>.tar.gz)
#   sudo deploy/install.sh --rollback             switch back to the previous release
#
# Layout: /opt/oti-gateway/releases/<version>-<time>/ (read-only, root), the symlinks
# /opt/oti-gateway/current and /opt/oti-gateway/previous, /usr/local/bin/oti, the unit
# /etc/systemd/system/oti-gateway.service (deploy/oti-gateway.service with the Debian package's
# /usr/lib/oti-gateway replaced by /opt/oti-gateway/current), /etc/oti-gateway/ (config), and the data folder
# /var/lib/oti-gateway (0700, user oti). The three newest releases are kept.
set -eu

BASE=/opt/oti-gateway
UNIT=/etc/systemd/system/oti-gateway.service
DATA=/var/lib/oti-gateway
CONF=/etc/oti-gateway
KEEP=3

die() { echo "install.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (sudo)"

# systemd: systemctl may be missing (a container) and systemd may not be running (a chroot or an
# image being prepared, where `systemctl enable` still works); the unit is written either way.
has_systemctl() { command -v systemctl >/dev/null 2>&1; }
systemd_running() { has_systemctl && [ -d /run/systemd/system ]; }

# Upgrades and rollbacks restart a running gateway; a fresh install is started by the installer
# once the provisioning bundle is in place (docs/INSTALL.md), so that the gateway never creates
# a development identity on a real site.
restart_if_running() {
  systemd_running || return 0
  systemctl daemon-reload
  if systemctl is-active --quiet oti-gateway; then systemctl restart oti-gateway; fi
}

if [ "${1:-}" = "--rollback" ]; then
  [ -L "$BASE/previous" ] || die "no previous release to roll back to"
  prev="$(readlink -f "$BASE/previous")"
  cur="$(readlink -f "$BASE/current")"
  ln -sfn "$prev" "$BASE/current.new" && mv -T "$BASE/current.new" "$BASE/current"
  ln -sfn "$cur" "$BASE/previous.new" && mv -T "$BASE/previous.new" "$BASE/previous"
  restart_if_running
  echo "rolled back to $prev (the release rolled back from stays in $cur)"
  exit 0
fi

SRC="$(cd "$(dirname "$0")/.." && pwd)"
# A release tree (npm run release), not a checkout: production dependencies and addons of one
# architecture only, recorded in RELEASE and NATIVE.txt.
[ -f "$SRC/RELEASE" ] && [ -x "$SRC/bin/oti" ] && [ -f "$SRC/dist/gateway/main.js" ] || die "$SRC is not a release tree: unpack a release (npm run release makes them), do not install a checkout"
arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; armv6l | armv7l) arch=armhf ;; esac
grep -q "linux-$arch " "$SRC/RELEASE" || die "$(cat "$SRC/RELEASE") is not for this machine ($arch)"
# The check the gateway's start makes (bin/oti-node): Node.js 20+ on PATH, /usr/local/bin included.
"$SRC/bin/oti-node" -e '' || die "install Node.js 20 or later first (docs/INSTALL.md §1)"
for pkg in bluez; do
  dpkg -s "$pkg" >/dev/null 2>&1 || echo "install.sh: note: package $pkg is not installed (apt-get install $pkg)" >&2
done

# The gateway user: no login, no home besides its data, in dialout for the serial ports.
if ! id oti >/dev/null 2>&1; then
  useradd --system --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin --user-group oti
fi
usermod -aG dialout oti
install -d -m 0700 -o oti -g oti "$DATA"
install -d -m 0755 "$CONF"
if [ ! -f "$CONF/config.yaml" ]; then
  printf '# OTI gateway configuration: every key is listed in docs/CONFIGURATION.md\ndataDir: %s\n' "$DATA" > "$CONF/config.yaml"
  chmod 0644 "$CONF/config.yaml"
fi

version="$(cut -d' ' -f2 "$SRC/RELEASE")"
# Modes are set explicitly: the tree must stay readable by oti under any umask of the installer.
install -d -m 0755 "$BASE" "$BASE/releases"
dest="$BASE/releases/$version-$(date -u +%Y%m%dT%H%M%SZ)"
while [ -e "$dest" ]; do sleep 1; dest="$BASE/releases/$version-$(date -u +%Y%m%dT%H%M%SZ)"; done
install -d -m 0755 "$dest"
cp -a "$SRC/." "$dest/"
chown -R root:root "$dest"
chmod -R go-w,a+rX "$dest"

# Switch atomically; remember the release we left.
if [ -L "$BASE/current" ]; then
  ln -sfn "$(readlink -f "$BASE/current")" "$BASE/previous.new" && mv -T "$BASE/previous.new" "$BASE/previous"
fi
ln -sfn "$dest" "$BASE/current.new" && mv -T "$BASE/current.new" "$BASE/current"

ln -sfn "$BASE/current/bin/oti" /usr/local/bin/oti
install -d -m 0755 "$(dirname "$UNIT")"
sed "/^#/!s|/usr/lib/oti-gateway|$BASE/current|g" "$dest/deploy/oti-gateway.service" > "$UNIT"
chmod 0644 "$UNIT"
if has_systemctl; then
  systemctl enable oti-gateway >/dev/null || echo "install.sh: note: systemctl enable oti-gateway failed; enable it once systemd runs" >&2
else
  echo "install.sh: note: no systemctl on this machine: $UNIT is written but not enabled" >&2
fi
restart_if_running

# Keep the newest releases, never the current or previous one.
keep_cur="$(readlink -f "$BASE/current")"
keep_prev="$(readlink -f "$BASE/previous" 2>/dev/null || true)"
ls -1dt "$BASE"/releases/*/ | sed "1,${KEEP}d" | while read -r old; do
  old="${old%/}"
  [ "$old" = "$keep_cur" ] || [ "$old" = "$keep_prev" ] || rm -rf "$old"
done

echo "installed $dest; the gateway runs as user oti with data in $DATA"
systemd_running && systemctl is-active --quiet oti-gateway || echo "start it once the bundle is in place: sudo systemctl start oti-gateway"
echo "then check it: sudo -u oti oti doctor --config $CONF/config.yaml"
