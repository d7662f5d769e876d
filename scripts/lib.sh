# Shared helpers for scripts: find nats-server, start one on a free loopback port.

nats_server_bin() {
  if [ -n "${NATS_SERVER_BIN:-}" ]; then echo "$NATS_SERVER_BIN"; return; fi
  local here; here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [ -x "$here/.venv/bin/nats-server" ]; then echo "$here/.venv/bin/nats-server"; return; fi
  command -v nats-server || { echo "error: nats-server not found (run ./dev setup)" >&2; return 1; }
}

# start_nats DIR: starts nats-server with JetStream storing in DIR; sets NATS_URL and NATS_PID.
start_nats() {
  local dir="$1" bin; bin="$(nats_server_bin)"
  mkdir -p "$dir/store"
  "$bin" -a 127.0.0.1 -p -1 -js -sd "$dir/store" --ports_file_dir "$dir" >"$dir/nats.log" 2>&1 &
  NATS_PID=$!
  local ports=""
  for _ in $(seq 1 100); do
    ports=$(ls "$dir"/*.ports 2>/dev/null | head -1 || true)
    [ -n "$ports" ] && [ -s "$ports" ] && break
    sleep 0.05
  done
  [ -n "$ports" ] || { echo "error: nats-server did not start; its log:" >&2; cat "$dir/nats.log" >&2; return 1; }
  NATS_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nats"][0])' "$ports")
  export NATS_URL NATS_PID
}
