#!/usr/bin/env bash
# The pilot on Kafka end to end: a local Apache Kafka (KRaft, newest pinned version) on a free
# port, then validate, plan, apply and status of examples/bmw-kafka/infra.yaml (or the file
# given), and a second plan that must be empty.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
. "$here/scripts/lib.sh"
file="${1:-$here/examples/bmw-kafka/infra.yaml}"
bin="$here/target/debug/eventbus"
work="$(mktemp -d)"
cleanup() { [ -n "${KAFKA_PID:-}" ] && kill -9 "$KAFKA_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "starting Apache Kafka (KRaft, one node)..."
start_kafka "$work"
echo "Kafka $KAFKA_VERSION at $KAFKA_BOOTSTRAP"
pilot_steps "$bin" "$file" "$work/state.json"
