#!/usr/bin/env bash
# Builds the Debian package: the dist binary (debug info split off into a -dbgsym
# package), its man page and
# shell completions, the systemd units pointing at /usr/bin, then `cargo deb`.
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
# The binary's debug info goes into invoice-sync-dbgsym_*.deb (for reading a crash's
# backtrace), the binary itself is stripped.
cargo deb --profile dist --no-build --dbgsym
ls -l target/debian/*.deb
