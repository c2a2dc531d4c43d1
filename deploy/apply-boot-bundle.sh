#!/bin/sh
# Runs as root before the gateway starts (ExecStartPre=+ in oti-gateway.service).
# If a provisioning bundle sits on the boot partition and the gateway has no identity yet,
# apply it into the data folder with `oti gateway apply-bundle`, hand the files to the oti
# user, and delete the bundle from the boot partition (it holds the gateway's private key).
# A bundle found when an identity already exists is left alone and reported.
set -eu
DATA="${OTI_DATA_DIR:-/var/lib/oti-gateway}"
RELEASE="$(dirname "$(dirname "$(readlink -f "$0")")")"
for b in /boot/firmware/oti-bundle.json /boot/oti-bundle.json; do
  [ -f "$b" ] || continue
  if [ -f "$DATA/site.json" ]; then
    echo "oti-gateway: $b ignored: $DATA already holds a gateway identity (delete the bundle, or apply it with --force)" >&2
    continue
  fi
  install -d -m 0700 -o oti -g oti "$DATA"
  # An encrypted bundle needs OTI_BUNDLE_PASSPHRASE (from /etc/oti-gateway/env).
  "$RELEASE/bin/oti" gateway apply-bundle "$b" --data "$DATA"
  chown -R oti:oti "$DATA"
  rm -f "$b.applied" "$b"
  echo "oti-gateway: applied $b to $DATA and removed it from the boot partition" >&2
done
