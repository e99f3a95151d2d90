#!/usr/bin/env bash
# Runs lintian on the packages built by build-deb.sh (the .deb and its -dbgsym .ddeb)
# and fails on any error or warning, as Debian's own packages must pass it. Info and
# pedantic tags are printed too but do not fail. Then it lists the overridden tags, each
# with the reason given in packaging/lintian-overrides (installed with the package,
# where lintian reads it). Needs lintian (`apt-get install lintian`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v lintian >/dev/null 2>&1; then
  echo "lintian is not installed (apt-get install lintian)"; exit 1
fi
packages=(target/debian/invoice-sync_*.deb target/debian/invoice-sync-dbgsym_*.ddeb)
lintian --version
echo "== lintian ${packages[*]}"
# --allow-root: CI runs as root, which lintian would warn about on every run.
if ! lintian --allow-root --fail-on error,warning --display-info --pedantic "${packages[@]}"; then
  echo "lintian failed: fix the tags above, or override one in packaging/lintian-overrides with its reason"
  exit 1
fi
# A second run only for the list: with --show-overrides, lintian counts an overridden
# warning towards --fail-on.
echo "== overridden (packaging/lintian-overrides), with the reasons"
lintian --allow-root --fail-on none --display-info --show-overrides "${packages[@]}" | grep -E '^[NO]:' || true
echo "lintian ok"
