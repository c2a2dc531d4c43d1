#!/bin/sh
# Installs or upgrades the OTI gateway on Raspberry Pi OS / Debian (docs/INSTALL.md).
#
#   sudo deploy/install.sh            install this release (the folder holding dist/ and
#                                     node_modules/, i.e. after `npm ci && npm run build`)
#   sudo deploy/install.sh --rollback switch back to the previous release
#
# Layout: /opt/oti-gateway/releases/<version>-<time>/ (read-only, root), the symlinks
# /opt/oti-gateway/current and /opt/oti-gateway/previous, /usr/local/bin/oti, the unit
# /etc/systemd/system/oti-gateway.service, /etc/oti-gateway/ (config), and the data folder
# /var/lib/oti-gateway (0700, user oti). The three newest releases are kept.
set -eu

BASE=/opt/oti-gateway
UNIT=/etc/systemd/system/oti-gateway.service
DATA=/var/lib/oti-gateway
CONF=/etc/oti-gateway
KEEP=3

die() { echo "install.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (sudo)"

# Upgrades and rollbacks restart a running gateway; a fresh install is started by the installer
# once the provisioning bundle is in place (docs/INSTALL.md), so that the gateway never creates
# a development identity on a real site.
restart_if_running() {
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
[ -f "$SRC/dist/gateway/main.js" ] && [ -d "$SRC/node_modules" ] || die "$SRC has no dist/ or node_modules/: run npm ci && npm run build first"
command -v node >/dev/null || die "node is not installed (Node.js 20 or later)"
major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$major" -ge 20 ] || die "Node.js $major is too old; 20 or later is needed"
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

version="$(node -p "require('$SRC/package.json').version")"
dest="$BASE/releases/$version-$(date -u +%Y%m%dT%H%M%SZ)"
install -d -m 0755 "$BASE/releases"
mkdir "$dest"
cp -a "$SRC/package.json" "$SRC/dist" "$SRC/node_modules" "$SRC/deploy" "$SRC/docs" "$dest/"
[ -f "$SRC/package-lock.json" ] && cp -a "$SRC/package-lock.json" "$dest/"
chown -R root:root "$dest"
chmod -R go-w "$dest"

# Switch atomically; remember the release we left.
if [ -L "$BASE/current" ]; then
  ln -sfn "$(readlink -f "$BASE/current")" "$BASE/previous.new" && mv -T "$BASE/previous.new" "$BASE/previous"
fi
ln -sfn "$dest" "$BASE/current.new" && mv -T "$BASE/current.new" "$BASE/current"

# The environment and node options of dist/provisioning/cli.js's first line (docs/DECISIONS.md §Memory).
printf '#!/bin/sh\nexec env MALLOC_ARENA_MAX=2 /usr/bin/node --optimize-for-size %s/current/dist/provisioning/cli.js "$@"\n' "$BASE" > /usr/local/bin/oti
chmod 0755 /usr/local/bin/oti
install -m 0644 "$dest/deploy/oti-gateway.service" "$UNIT"
systemctl enable oti-gateway >/dev/null
restart_if_running

# Keep the newest releases, never the current or previous one.
keep_cur="$(readlink -f "$BASE/current")"
keep_prev="$(readlink -f "$BASE/previous" 2>/dev/null || true)"
ls -1dt "$BASE"/releases/*/ | sed "1,${KEEP}d" | while read -r old; do
  old="${old%/}"
  [ "$old" = "$keep_cur" ] || [ "$old" = "$keep_prev" ] || rm -rf "$old"
done

echo "installed $dest; the gateway runs as user oti with data in $DATA"
systemctl is-active --quiet oti-gateway || echo "start it once the bundle is in place: sudo systemctl start oti-gateway"
echo "then check it: sudo -u oti oti doctor --config $CONF/config.yaml"
