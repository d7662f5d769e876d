#!/usr/bin/env bash
# Builds the directory wfctl loads as an external IaC plugin, plus a tarball and its sha256:
#
#   dist/workflow-plugin-eventbus/
#     workflow-plugin-eventbus   the host binary (serves go-plugin gRPC when wfctl starts it)
#     eventbus_guest.wasm        the provider component, found beside the binary
#     plugin.json                the manifest wfctl reads (capabilities.iacProvider.name = eventbus)
#     policy.json                the capability rules any host of the component enforces
#   dist/workflow-plugin-eventbus-<version>-<os>-<arch>.tar.gz (+ .sha256)
#
# Usage: scripts/package.sh [release|debug]   (default release)
# Environment: DIST_DIR (default <repo>/dist); PACKAGE_BIN / PACKAGE_WASM use those files
# instead of building; SKIP_TARBALL=1 stops after the directory.
# Install for wfctl: copy the directory into wfctl's plugin dir (--plugin-dir,
# $WFCTL_PLUGIN_DIR or ./data/plugins).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
profile="${1:-release}"
name=workflow-plugin-eventbus
dist="${DIST_DIR:-$here/dist}"
out="$dist/$name"

bin="${PACKAGE_BIN:-}"
wasm="${PACKAGE_WASM:-}"
if [ -z "$wasm" ]; then
  (cd "$here" && cargo build -p eventbus-guest --target wasm32-wasip2 --release)
  wasm="$here/target/wasm32-wasip2/release/eventbus_guest.wasm"
fi
if [ -z "$bin" ]; then
  case "$profile" in
    release) (cd "$here" && cargo build -p eventbus-host --release); bin="$here/target/release/eventbus" ;;
    debug) (cd "$here" && cargo build -p eventbus-host); bin="$here/target/debug/eventbus" ;;
    *) echo "error: profile must be release or debug, not $profile" >&2; exit 1 ;;
  esac
fi
[ -x "$bin" ] || { echo "error: no host binary at $bin" >&2; exit 1; }
[ -f "$wasm" ] || { echo "error: no component at $wasm" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
cp "$bin" "$out/$name"
cp "$wasm" "$out/eventbus_guest.wasm"
chmod 755 "$out/$name"

# Without the cookie the binary is the CLI: its version, and every resource type's schema
# (which also proves it finds the component beside itself).
unset EVENTBUS_COMPONENT WORKFLOW_PLUGIN
version="$("$out/$name" --version | awk '{print $2}')"
schema="$(cd "$out" && "./$name" schema)"
# The capability rules every host must enforce on the component, as data (`eventbus policy`).
"$out/$name" policy > "$out/policy.json"

# The component pinned by digest: its file's sha256, and the oci:// reference `just publish`
# pushes it under (the digest depends only on the component's bytes, so it is known here).
oci="$("$out/$name" --component "$out/eventbus_guest.wasm" publish --dry-run "oci://${REGISTRY:-127.0.0.1:5000}/${REPO:-eventbus/iac}")"
wasm_sha="sha256:$(sha256sum "$out/eventbus_guest.wasm" | awk '{print $1}')"

OCI="$oci" WASM_SHA="$wasm_sha" SCHEMA="$schema" VERSION="$version" python3 - "$out/plugin.json" <<'PY'
import json, os, sys
schemas = json.loads(os.environ["SCHEMA"])
types = sorted(schemas)
services = sorted(
    "workflow.plugin.external.iac." + s
    for s in ["IaCProviderRequired", "ResourceDriver", "IaCProviderDriftDetector",
              "IaCProviderDriftConfigDetector", "IaCProviderFinalizer"]
)
manifest = {
    "name": "workflow-plugin-eventbus",
    "version": os.environ["VERSION"],
    "author": "The eventbus authors",
    "description": "Event-bus infrastructure (NATS JetStream brokers, streams, consumers) for wfctl; "
                   "the provisioning logic runs as a sandboxed WebAssembly component",
    "license": "Apache-2.0",
    "type": "external",
    "tier": "community",
    "minEngineVersion": "0.56.0",
    "keywords": ["iac", "nats", "jetstream", "eventbus"],
    "capabilities": {
        "moduleTypes": ["iac.provider"] + types,
        "iacProvider": {"name": "eventbus", "resourceTypes": types, "configSchema": schemas},
    },
    "iacProvider": {"computePlanVersion": "v2"},
    "iacServices": services,
    # Which component this plugin runs: the file beside it, and the same bytes in a registry.
    "eventbusComponent": {
        "file": "eventbus_guest.wasm",
        "sha256": os.environ["WASM_SHA"],
        "oci": os.environ["OCI"],
    },
}
with open(sys.argv[1], "w") as f:
    json.dump(manifest, f, indent=2)
    f.write("\n")
PY

echo "packaged $out ($version):"
ls -l "$out"
[ "${SKIP_TARBALL:-}" = 1 ] && exit 0

os="$(uname -s | tr '[:upper:]' '[:lower:]')"
arch="$(uname -m)"
case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
tarball="$name-$version-$os-$arch.tar.gz"
tar -C "$dist" -czf "$dist/$tarball" "$name"
(cd "$dist" && sha256sum "$tarball" > "$tarball.sha256")
echo "$dist/$tarball"
cat "$dist/$tarball.sha256"
