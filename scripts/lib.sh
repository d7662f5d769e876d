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

# start_kafka DIR [VERSION]: one Apache Kafka node in KRaft mode (broker and controller) on free
# loopback ports, its jars fetched by scripts/kafka.sh (default: the newest pinned version),
# storing and logging in DIR; waits for the server's own "started" line; sets KAFKA_BOOTSTRAP
# and KAFKA_PID.
start_kafka() {
  local dir="$1" here; here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local version="${2:-$(grep -v '^[[:space:]]*\(#\|$\)' "$here/scripts/kafka-versions" | tail -1 | tr -d '[:blank:]')}"
  command -v java >/dev/null || { echo "error: Kafka needs Java 17 or newer (java not found)" >&2; return 1; }
  local libs; libs="$("$here/scripts/kafka.sh" "$version" | tail -1)"
  local ports; ports=($(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))'))
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${ports[1]}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:${ports[0]},CONTROLLER://127.0.0.1:${ports[1]}
advertised.listeners=PLAINTEXT://127.0.0.1:${ports[0]}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  # INFO to the console (the "started" line), whichever logging the release has: log4j2 (4.x)
  # or reload4j (3.x).
  printf '%s\n' 'rootLogger.level=INFO' 'rootLogger.appenderRef.out.ref=OUT' 'appender.out.type=Console' \
    'appender.out.name=OUT' 'appender.out.layout.type=PatternLayout' 'appender.out.layout.pattern=[%d] %p %m%n' >"$dir/log4j2.properties"
  printf '%s\n' 'log4j.rootLogger=INFO, out' 'log4j.appender.out=org.apache.log4j.ConsoleAppender' \
    'log4j.appender.out.layout=org.apache.log4j.PatternLayout' 'log4j.appender.out.layout.ConversionPattern=[%d] %p %m%n' >"$dir/log4j.properties"
  local java_opts=(-Xms256m -Xmx1g -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dkafka.logs.dir="$dir"
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$libs/*")
  java "${java_opts[@]}" kafka.tools.StorageTool format --ignore-formatted \
    --cluster-id="eventbus-demo-$(date +%s)" --config "$dir/server.properties" >"$dir/format.log" 2>&1 \
    || { echo "error: formatting Kafka's storage failed:" >&2; cat "$dir/format.log" >&2; return 1; }
  java "${java_opts[@]}" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  KAFKA_PID=$!
  for _ in $(seq 1 1200); do
    grep -q "Kafka Server started" "$dir/kafka.log" 2>/dev/null && break
    kill -0 "$KAFKA_PID" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "Kafka Server started" "$dir/kafka.log" \
    || { echo "error: Kafka $version did not start; the end of its log:" >&2; tail -20 "$dir/kafka.log" >&2; return 1; }
  KAFKA_BOOTSTRAP="127.0.0.1:${ports[0]}"
  KAFKA_VERSION="$version"
  export KAFKA_BOOTSTRAP KAFKA_PID KAFKA_VERSION
}

# pilot_steps BIN FILE STATE: validate, a plan with changes (exit 2), apply, an empty plan
# (exit 0) and status, each command shown before it runs; fails if a plan says otherwise.
pilot_steps() {
  local bin="$1" file="$2" state="$3" code
  run() { echo; echo "\$ eventbus $*"; "$bin" -f "$file" --state "$state" "$@"; }
  run validate
  set +e; run plan; code=$?; set -e
  [ "$code" = 2 ] || { echo "expected plan to report changes (exit 2), got $code" >&2; return 1; }
  run apply
  set +e; run plan; code=$?; set -e
  [ "$code" = 0 ] || { echo "expected an empty plan after apply (exit 0), got $code" >&2; return 1; }
  run status
}
