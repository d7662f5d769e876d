#!/usr/bin/env bash
# Installs kinesis-mock (the npm package `kinesis-local`, at the version pinned in
# scripts/kinesis-mock-version) into .cache/kinesis-mock/ (ignored by git) and prints the
# package's folder. npm keeps its downloads in its own user cache (~/.npm), so a second install
# on the machine (a fresh clone, CI) copies instead of downloading. Once the pinned version is
# there the script only prints the folder. The tests (tests/src/kinesis.rs) run it as
# `node --require tests/src/listen_loopback.js <folder>/main.js`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
version="$(grep -v '^[[:space:]]*\(#\|$\)' "$here/scripts/kinesis-mock-version" | tr -d '[:blank:]' | head -1)"
dir="$here/.cache/kinesis-mock"
pkg="$dir/node_modules/kinesis-local"

installed() {
  [ -f "$pkg/package.json" ] && node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' "$pkg/package.json" "$version"
}

if ! installed; then
  command -v npm >/dev/null || { echo "error: kinesis-mock needs Node.js and npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
  mkdir -p "$dir"
  # A package.json of its own, so npm installs here and not into a parent folder's project.
  [ -f "$dir/package.json" ] || echo '{"private": true}' > "$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error --save-exact "kinesis-local@$version" >&2
  installed || { echo "error: npm did not install kinesis-local $version into $dir" >&2; exit 1; }
fi
echo "$pkg"
