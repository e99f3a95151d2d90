#!/usr/bin/env bash
# Lists the package built by build-deb.sh and fails unless it holds what an install
# needs, with a binary of at most 20 MB that names its source revision; then installs it
# (`apt install ./invoice-sync_*.deb`, as the README says) and runs the installed binary.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=$(ls target/debian/invoice-sync_*.deb)
echo "== $deb"
dpkg-deb --info "$deb"
contents=$(dpkg-deb --contents "$deb")
echo "$contents"
missing=0
for path in \
  ./usr/bin/invoice-sync \
  ./etc/invoice-sync/invoice-sync.toml \
  ./usr/lib/systemd/system/invoice-sync.service \
  ./usr/lib/systemd/system/invoice-sync-run.service \
  ./usr/lib/systemd/system/invoice-sync.timer \
  ./usr/lib/systemd/system/invoice-sync@.service \
  ./usr/lib/systemd/system/invoice-sync-run@.service \
  ./usr/lib/systemd/system/invoice-sync-run@.timer \
  ./usr/lib/sysusers.d/invoice-sync.conf \
  ./usr/share/man/man1/invoice-sync.1.gz \
  ./usr/share/bash-completion/completions/invoice-sync \
  ./usr/share/zsh/vendor-completions/_invoice-sync \
  ./usr/share/fish/vendor_completions.d/invoice-sync.fish \
  ./usr/share/doc/invoice-sync/copyright \
  ./usr/share/doc/invoice-sync/changelog.Debian.gz \
  ./usr/share/lintian/overrides/invoice-sync; do
  if ! grep -q " $path\$" <<<"$contents"; then
    echo "MISSING from the package: $path"
    missing=1
  fi
done
if [ "$(dpkg-deb --field "$deb" Package)" != invoice-sync ]; then
  echo "wrong package name"; missing=1
fi
if ! dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/invoice-sync/invoice-sync.toml; then
  echo "the config is not a conffile"; missing=1
fi
# The changelog's top entry must be this version (packaging/changelog, newest first).
deb_version=$(dpkg-deb --field "$deb" Version)
logged=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/doc/invoice-sync/changelog.Debian.gz \
  | gzip -dc | sed -n '1s/^invoice-sync (\([^)]*\)).*/\1/p') || true
if [ "$logged" != "$deb_version" ]; then
  echo "packaging/changelog starts with version '$logged', the package is $deb_version: add an entry"
  missing=1
fi
size=$(grep ' ./usr/bin/invoice-sync$' <<<"$contents" | awk '{print $3}')
echo "binary: $size bytes"
if [ "$size" -gt $((20 * 1024 * 1024)) ]; then
  echo "the binary is over 20 MB"; missing=1
fi
[ "$missing" = 0 ]

# --reinstall: a machine that has this version installed already gets this build.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "./$deb"
version=$(/usr/bin/invoice-sync --version)
echo "installed: $version"
grep -Eq '^invoice-sync [0-9.]+ \([0-9a-f]{12}' <<<"$version"
if [ "$version" != "$(target/dist/invoice-sync --version)" ]; then
  echo "the installed binary is not this build"; exit 1
fi
grep -q 'ExecStart=/usr/bin/invoice-sync ' /usr/lib/systemd/system/invoice-sync.service
systemd-analyze verify --man=no --generators=no /usr/lib/systemd/system/invoice-sync.service \
  /usr/lib/systemd/system/invoice-sync-run.service /usr/lib/systemd/system/invoice-sync.timer
echo "package ok"
