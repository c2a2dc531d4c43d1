#!/usr/bin/env bash
# `npm run release`: installable artifacts per architecture in release/ (docs/INSTALL.md):
#   oti-gateway-<version>-linux-<arch>.tar.gz   the release tree, for deploy/install.sh
#   oti-gateway_<version>_<arch>.deb            the Debian package (dpkg -i)
# for each of $OTI_RELEASE_ARCHS (default: amd64 arm64 armhf). Each tree holds the compiled
# dist/, the production dependencies only (a copy of node_modules pruned with --omit=dev,
# nothing run or compiled), and per native module only the prebuilt addons of its architecture,
# checked by their ELF headers (deploy/native-check.ts). $OTI_RELEASE_VERSION overrides the
# package version (a rebuilt artifact for an upgrade): it is written into the tree's
# package.json, which `oti --version`, /status and the MQTT discovery read, as well as into
# RELEASE, the file names and the .deb's control file. $OTI_RELEASE_DEB_COMPRESSION sets the
# .deb's compression (xz, the default, is the smallest; gzip is several times faster to build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="$ROOT/release"
ARCHS="${OTI_RELEASE_ARCHS:-amd64 arm64 armhf}"
DEB_COMPRESSION="${OTI_RELEASE_DEB_COMPRESSION:-xz}"
VERSION="${OTI_RELEASE_VERSION:-$(node -p 'require("./package.json").version')}"
# A version dpkg and npm both read (digits first; letters, digits and . + ~ - after).
if ! printf '%s' "$VERSION" | grep -Eq '^[0-9][0-9A-Za-z.+~-]*$'; then
  echo "release.sh: OTI_RELEASE_VERSION '$VERSION' is not a package version (like 0.1.1 or 0.1.0+rebuild1)" >&2
  exit 2
fi

npx tsc -p tsconfig.json
rm -rf "$OUT/stage"
mkdir -p "$OUT/stage"

# Production dependencies, once: a copy of node_modules pruned of the dev tools (offline).
# node_modules/. copies the folder's contents even where node_modules is a symlink (a git
# worktree sharing a checkout's): never the link itself, which npm prune would follow.
prod="$OUT/stage/prod"
mkdir -p "$prod/node_modules"
cp -a package.json package-lock.json "$prod/"
cp -a node_modules/. "$prod/node_modules/"
(cd "$prod" && npm prune --omit=dev --ignore-scripts --offline --no-audit --no-fund --loglevel=error)
# Compiler leftovers of addons built on this machine: objects, not loadable addons.
find "$prod/node_modules" -type d \( -name obj.target -o -name .deps \) -prune -exec rm -rf {} +

tree_for() { # arch → a release tree in $OUT/stage/<arch>/oti-gateway
  local arch="$1" t="$OUT/stage/$1/oti-gateway"
  mkdir -p "$t/dist"
  cp -a "$prod/node_modules" package.json package-lock.json "$t/"
  # The one version the release reports: the runtime reads it from package.json.
  node -e 'const fs = require("fs"), [f, v] = process.argv.slice(1), p = JSON.parse(fs.readFileSync(f, "utf8")); p.version = v; fs.writeFileSync(f, JSON.stringify(p, null, 2) + "\n")' "$t/package.json" "$VERSION"
  (cd dist && cp -a gateway drivers ledger provisioning hardware-test "$t/dist/")
  find "$t/dist" -name '*.map' -delete
  mkdir -p "$t/deploy" "$t/docs"
  cp -a deploy/oti-gateway.service deploy/apply-boot-bundle.sh deploy/install.sh "$t/deploy/"
  cp -a deploy/bin "$t/bin"
  cp -a docs/*.md README.md "$t/docs/"
  node dist/deploy/native-check.js "$t" "$arch" --prune > "$OUT/stage/$arch.native.txt" || {
    grep -v '^ok' "$OUT/stage/$arch.native.txt" >&2
    echo "release.sh: the $arch tree failed the native check (deploy/native-check.ts)" >&2
    exit 1
  }
  cp "$OUT/stage/$arch.native.txt" "$t/NATIVE.txt"
  printf 'oti-gateway %s linux-%s built %s from %s\n' "$VERSION" "$arch" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" > "$t/RELEASE"
}

deb_for() { # arch → release/oti-gateway_<version>_<arch>.deb
  local arch="$1" d="$OUT/stage/$1/deb"
  mkdir -p "$d/usr/lib" "$d/usr/bin" "$d/lib/systemd/system" "$d/etc/oti-gateway" "$d/DEBIAN"
  cp -a "$OUT/stage/$arch/oti-gateway" "$d/usr/lib/oti-gateway"
  ln -s ../lib/oti-gateway/bin/oti "$d/usr/bin/oti"
  install -m 0644 deploy/oti-gateway.service "$d/lib/systemd/system/oti-gateway.service"
  install -m 0644 deploy/debian/config.yaml "$d/etc/oti-gateway/config.yaml"
  install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$d/DEBIAN/"
  echo /etc/oti-gateway/config.yaml > "$d/DEBIAN/conffiles"
  chmod -R go-w "$d"
  cat > "$d/DEBIAN/control" <<CONTROL
Package: oti-gateway
Version: $VERSION
Architecture: $arch
Maintainer: OTI Gateway developers <dev@oti.invalid>
Section: net
Priority: optional
Installed-Size: $(du -sk "$d" | cut -f1)
Depends: passwd, init-system-helpers (>= 1.54~)
Recommends: nodejs (>= 20), bluez
Suggests: avahi-daemon, libcap2-bin
Description: OTI Gateway: signed, tamper-evident lock event ledger for smart-lock sites
 Runs as the system user oti under systemd (oti-gateway.service), with its configuration in
 /etc/oti-gateway and its data in /var/lib/oti-gateway. Needs Node.js 20 or later, from
 NodeSource, nodejs.org or Debian 13; Debian 12 ships Node.js 18 (docs/INSTALL.md).
CONTROL
  dpkg-deb --root-owner-group "-Z$DEB_COMPRESSION" -b "$d" "$OUT/oti-gateway_${VERSION}_${arch}.deb" >/dev/null
}

for arch in $ARCHS; do
  echo "== $arch"
  tree_for "$arch"
  grep -v '^ok' "$OUT/stage/$arch.native.txt" || true
  tar -C "$OUT/stage/$arch" --owner=0 --group=0 -czf "$OUT/oti-gateway-$VERSION-linux-$arch.tar.gz" oti-gateway
  deb_for "$arch"
done
rm -rf "$OUT/stage"
ls -l "$OUT"
