#!/usr/bin/env bash
# The pilot end to end: a local nats-server with JetStream on a free port, then
# validate, plan, apply (with progress) and status of the given infra.yaml.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
. "$here/scripts/lib.sh"
file="${1:-$here/examples/bmw/infra.yaml}"
bin="$here/target/debug/eventbus"
work="$(mktemp -d)"
cleanup() { [ -n "${NATS_PID:-}" ] && kill "$NATS_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start_nats "$work"
echo "nats-server $("$(nats_server_bin)" --version | awk '{print $2}') with JetStream at $NATS_URL"
pilot_steps "$bin" "$file" "$work/state.json"
