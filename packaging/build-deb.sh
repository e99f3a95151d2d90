#!/usr/bin/env bash
# Builds the Debian package: the dist binary (debug info split off into a -dbgsym
# package), its man page and shell completions, the systemd units pointing at /usr/bin,
# then `cargo deb`, then adds what cargo-deb leaves out (below).
# Needs cargo-deb (`cargo install cargo-deb`). The package lands in target/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --profile dist --locked
bin=target/dist/invoice-sync
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/systemd"
"$bin" completions bash > "$assets/completions/invoice-sync.bash"
"$bin" completions zsh > "$assets/completions/_invoice-sync"
"$bin" completions fish > "$assets/completions/invoice-sync.fish"
"$bin" manpage | gzip -9n > "$assets/invoice-sync.1.gz"
# The repository's units start /usr/local/bin/invoice-sync (a hand install); the package
# puts the binary in /usr/bin, and installs the man page that Documentation= names
# (`systemctl help invoice-sync`).
for unit in systemd/*.service systemd/*.timer; do
  sed -e 's|/usr/local/bin/invoice-sync|/usr/bin/invoice-sync|g' \
    -e '/^Description=/a Documentation=man:invoice-sync(1)' \
    "$unit" > "$assets/systemd/$(basename "$unit")"
done
# The packages' file dates are those of the commit built (reproducible builds).
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && epoch=$(git log -1 --format=%ct 2>/dev/null); then
  export SOURCE_DATE_EPOCH=$epoch
fi
# Only this build's packages in target/debian/, for check-deb.sh and lintian-deb.sh.
rm -f target/debian/invoice-sync_*.deb target/debian/invoice-sync-dbgsym_*.ddeb
# The binary's debug info goes into invoice-sync-dbgsym_*.ddeb (for reading a crash's
# backtrace), the binary itself is stripped.
built=$(cargo deb --profile dist --no-build --dbgsym) # the paths of the .deb and the .ddeb
mapfile -t packages <<<"$built"

# What cargo-deb leaves out, added by unpacking each package and packing it again with
# dpkg-deb (same file dates, same compression):
# - DEBIAN/md5sums, which `dpkg --verify invoice-sync` and debsums check the installed
#   files against (not for conffiles: dpkg keeps their sums itself);
# - in the -dbgsym package, what Debian's own (dh_strip's) have: Priority: optional
#   (cargo-deb writes "extra", a priority Debian no longer has), a Depends on this very
#   version of the package (cargo-deb: Recommends), and /usr/share/doc/invoice-sync-dbgsym
#   as a symlink to the package's (copyright, changelog).
finish() {
  local deb=$1 root
  root=$(mktemp -d)
  chmod 0755 "$root"
  dpkg-deb --raw-extract "$deb" "$root"
  if [ "$(dpkg-deb --field "$deb" Package)" = invoice-sync-dbgsym ]; then
    sed -i -e 's/^Priority: extra$/Priority: optional/' \
      -e 's/^Recommends: invoice-sync /Depends: invoice-sync /' "$root/DEBIAN/control"
    mkdir -p "$root/usr/share/doc"
    ln -s invoice-sync "$root/usr/share/doc/invoice-sync-dbgsym"
    touch -h -d "@$(stat -c %Y "$root/usr/lib")" "$root/usr/share/doc/invoice-sync-dbgsym" \
      "$root/usr/share/doc" "$root/usr/share" "$root/usr"
  fi
  (
    cd "$root"
    find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort \
      | { grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles 2>/dev/null) || true; } \
      | xargs -r -d '\n' md5sum > DEBIAN/md5sums
  )
  chmod 0644 "$root/DEBIAN/md5sums"
  touch -d "@$(stat -c %Y "$root/DEBIAN/control")" "$root/DEBIAN/md5sums"
  dpkg-deb --root-owner-group -Zxz -z6 --build "$root" "$deb" >/dev/null
  rm -rf "$root"
}
for deb in "${packages[@]}"; do
  finish "$deb"
done
ls -l "${packages[@]}"
