#!/usr/bin/env bash
# Builds the real wfctl (GoCodeAlone/workflow's CLI) at the pinned release through the Go module
# proxy, once, into .cache/wfctl/<version>/ (ignored by git), and prints the binary's path.
#
#   scripts/wfctl.sh            -> .cache/wfctl/v0.85.4/wfctl
#   WFCTL_VERSION=v0.85.3 scripts/wfctl.sh
#
# `go install github.com/GoCodeAlone/workflow/cmd/wfctl@VERSION` is the documented way, but the
# proxy refuses the module's version list (403), which `go install` reads to look for a
# deprecation notice; so the module is downloaded at that exact version and built inside its
# folder, as `go install` would, with the version stamped as release builds do. Go keeps the
# download and the build cache in its own user caches, so a second machine run reuses them.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
version="${WFCTL_VERSION:-v0.85.4}"
module=github.com/GoCodeAlone/workflow
out="$here/.cache/wfctl/$version"
bin="$out/wfctl"

if [ -x "$bin" ] && "$bin" --version 2>&1 | grep -q -- "$version"; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go is required to build wfctl (https://go.dev/dl/)" >&2; exit 1; }
echo "==> building wfctl $version from the Go module proxy (first time: a few minutes)" >&2
dir="$(cd "$here" && go mod download -json "$module@$version" \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["Dir"])')"
mkdir -p "$out"
(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$version" -o "$bin.tmp" ./cmd/wfctl)
mv "$bin.tmp" "$bin"
"$bin" --version >&2
echo "$bin"
