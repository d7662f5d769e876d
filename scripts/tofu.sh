#!/usr/bin/env bash
# Builds what users would pick instead of eventbus, for `just bench`'s side-by-side: OpenTofu
# and nats-io's terraform-provider-jetstream, at pinned versions, once, into .cache/tofu/
# (ignored by git). Prints two lines: the tofu binary, then the directory holding
# terraform-provider-jetstream (what a CLI config's dev_overrides points at).
#
#   scripts/tofu.sh     -> .cache/tofu/opentofu-v1.12.6/tofu
#                          .cache/tofu/terraform-provider-jetstream-v0.4.0
#   TOFU_VERSION=... JETSTREAM_PROVIDER_VERSION=... scripts/tofu.sh
#
# Both come from the Go module proxy like wfctl (scripts/wfctl.sh): the module is downloaded at
# its exact version and built inside its folder, since `go install` asks the proxy for version
# lists it refuses. Where the proxy refuses the provider's module itself (it answers 403 for
# every version of github.com/nats-io/terraform-provider-jetstream on some machines), set
# JETSTREAM_PROVIDER_SRC to a git clone of its repository: the pinned tag is exported from it
# with `git archive` and built the same way, its dependencies still from the proxy (go.sum
# checks them). Exit 1, saying why, when either cannot be built; `just bench` then leaves the
# comparison out.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tofu_version="${TOFU_VERSION:-v1.12.6}"
provider_version="${JETSTREAM_PROVIDER_VERSION:-v0.4.0}"
cache="$here/.cache/tofu"
tofu_bin="$cache/opentofu-$tofu_version/tofu"
provider_dir="$cache/terraform-provider-jetstream-$provider_version"
provider_bin="$provider_dir/terraform-provider-jetstream"

# The Dir of a module at an exact version in Go's module cache, or nothing if the proxy refuses.
module_dir() {
  (cd "$here" && go mod download -json "$1@$2" 2>/dev/null) \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print("" if d.get("Error") else d.get("Dir", ""))' \
    || true
}

need_go() {
  command -v go >/dev/null || { echo "error: Go is required to build $1 (https://go.dev/dl/)" >&2; exit 1; }
}

# No CLI config of the user's (it only warns when there is none).
export TF_CLI_CONFIG_FILE=/dev/null

# The provider's source first: without it there is no comparison, so OpenTofu is not built
# for nothing (that takes minutes).
provider_dir_src=""
if [ ! -x "$provider_bin" ] || [ "$(cat "$provider_dir/VERSION" 2>/dev/null)" != "$provider_version" ]; then
  need_go terraform-provider-jetstream
  provider_dir_src="$(module_dir github.com/nats-io/terraform-provider-jetstream "$provider_version")"
  if [ -z "$provider_dir_src" ] && [ -z "${JETSTREAM_PROVIDER_SRC:-}" ]; then
    echo "error: the Go module proxy refuses github.com/nats-io/terraform-provider-jetstream@$provider_version;" \
      "set JETSTREAM_PROVIDER_SRC to a git clone of its repository" >&2
    exit 1
  fi
fi

if ! { [ -x "$tofu_bin" ] && "$tofu_bin" version 2>/dev/null | head -1 | grep -qx "OpenTofu $tofu_version"; }; then
  need_go OpenTofu
  echo "==> building OpenTofu $tofu_version from the Go module proxy (first time: several minutes)" >&2
  dir="$(module_dir github.com/opentofu/opentofu "$tofu_version")"
  [ -n "$dir" ] || { echo "error: the Go module proxy does not serve github.com/opentofu/opentofu@$tofu_version" >&2; exit 1; }
  mkdir -p "$(dirname "$tofu_bin")"
  # As OpenTofu's release builds (.goreleaser.yaml): without version.dev=no it calls itself -dev.
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" \
    -o "$tofu_bin.tmp" ./cmd/tofu)
  mv "$tofu_bin.tmp" "$tofu_bin"
fi

if [ ! -x "$provider_bin" ] || [ "$(cat "$provider_dir/VERSION" 2>/dev/null)" != "$provider_version" ]; then
  need_go terraform-provider-jetstream
  echo "==> building terraform-provider-jetstream $provider_version" >&2
  dir="$provider_dir_src"
  if [ -z "$dir" ]; then
    src="${JETSTREAM_PROVIDER_SRC:-}"
    if [ -z "$src" ]; then
      echo "error: the Go module proxy refuses github.com/nats-io/terraform-provider-jetstream@$provider_version;" \
        "set JETSTREAM_PROVIDER_SRC to a git clone of its repository" >&2
      exit 1
    fi
    dir="$cache/src/terraform-provider-jetstream-$provider_version"
    rm -rf "$dir"
    mkdir -p "$dir"
    git -C "$src" archive "$provider_version" | tar -x -C "$dir"
  fi
  mkdir -p "$provider_dir"
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${provider_version#v}" -o "$provider_bin.tmp" .)
  mv "$provider_bin.tmp" "$provider_bin"
  echo "$provider_version" > "$provider_dir/VERSION"
fi

"$tofu_bin" version >&2
echo "$tofu_bin"
echo "$provider_dir"
