"""An independent look at a Kafka cluster, for the tests (tests/src/kafka.rs, `KafkaCheck`).

It uses confluent-kafka (librdkafka), a client that shares no code with the provider, so the
tests judge the provider by what the server really holds. One command per run, its answer as
one JSON document on stdout; a failure exits 1 with the reason on stderr.

Usage:
  kafka_check.py --bootstrap HOST:PORT[,...] [--sasl-user U --sasl-password P
                 [--sasl-mechanism SCRAM-SHA-512|SCRAM-SHA-256|PLAIN]] [--ssl-ca CA.pem]
                 COMMAND [ARGS]

--ssl-ca: TLS (SSL, or SASL_SSL with --sasl-user), trusting that CA certificate (the broker's
name checked as librdkafka does by default).

Commands (answers):
  topic NAME              {"name", "topic_id", "partitions", "replication_factor", "configs":
                          {non-default topic configs}, "replicas": [[broker ids] per partition]}
                          or null (topic_id: a recreated topic gets a new one)
  topic-config NAME KEY   the effective value (defaults included) as a string, or null
  topics                  [names], internal topics (__consumer_offsets, ...) left out, sorted
  create-topic NAME PARTITIONS RF   {"created": NAME}
  group ID                {"state", "members": n, "offsets": {topic: {"0": offset}}} or null
  groups                  [ids], sorted
  acls PRINCIPAL          [{"resource_type", "resource_name", "pattern_type", "principal",
                          "host", "operation", "permission"}], sorted
  produce TOPIC N         {"produced": N}: N messages, round-robin over the partitions
  cluster                 {"cluster_id", "controller", "brokers": n, "broker_ids": [..]}

What the server accepts (the fidelity suite's truth; a refusal is an answer, not a failure):
  create-topic-with NAME PARTITIONS RF CONFIGS_JSON   {"ok": true} or {"ok": false, "error", "message"}
  alter TOPIC KEY VALUE   an incremental SET of one topic config: {"ok": ...} as above
  partitions TOPIC N      raise the topic to N partitions: {"ok": ...} as above

A live consumer (for refusals that need one):
  join GROUP TOPIC        joins GROUP on TOPIC, prints {"joined": GROUP, "partitions": n} once
                          assigned, stays a member until stdin closes, then {"left": GROUP}
"""

import argparse
import concurrent.futures
import json
import sys
import time

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
)
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

TIMEOUT = 15.0  # seconds, for every request
INTERNAL = {"__consumer_offsets", "__transaction_state", "__share_group_state"}
ABSENT = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.GROUP_ID_NOT_FOUND,
}
# Client errors after which waiting is pointless: wrong credentials, nobody listening (or
# speaking Kafka's protocol with this security protocol).
GIVE_UP = {KafkaError._AUTHENTICATION, KafkaError._ALL_BROKERS_DOWN}
# A group's coordinator may not be there yet: the first group request makes the broker create
# __consumer_offsets, and until its partition is loaded group requests answer these.
NOT_YET = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


def client_config(args):
    conf = {
        "bootstrap.servers": args.bootstrap,
        "socket.timeout.ms": int(TIMEOUT * 1000),
        "log_level": 2,  # librdkafka's own log: only what is critical; errors come via error_cb
        "error_cb": ERRORS.append,
    }
    if args.ssl_ca is not None:
        conf.update({"security.protocol": "SSL", "ssl.ca.location": args.ssl_ca})
    if args.sasl_user is not None:
        conf.update(
            {
                "security.protocol": "SASL_SSL" if args.ssl_ca is not None else "SASL_PLAINTEXT",
                "sasl.mechanism": args.sasl_mechanism,
                "sasl.username": args.sasl_user,
                "sasl.password": args.sasl_password,
            }
        )
    return conf


def metadata(client, topic=None):
    """client.list_topics(topic), failing early as wait() does."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return client.list_topics(topic, timeout=0.5)
        except KafkaException as e:
            if code(e) != KafkaError._TIMED_OUT:
                raise
        client.poll(0)
        fatal = [e for e in ERRORS if e.code() in GIVE_UP or e.fatal()]
        if fatal:
            raise KafkaException(fatal[0])
        if time.monotonic() > deadline:
            raise TimeoutError(f"no metadata within {TIMEOUT}s")


def code(exc):
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


def absent(exc):
    """Whether a failed request only says that the thing asked for does not exist."""
    return code(exc) in ABSENT


def coordinated(request):
    """request() again while the group coordinator is not there yet, up to TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return request()
        except KafkaException as e:
            if code(e) not in NOT_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# What librdkafka reported through error_cb (connection and authentication failures, which
# requests would otherwise only wait out); served by the client's poll() in wait().
ERRORS = []
CLIENT = []  # the client wait() polls


def wait(future):
    """future's result, failing early on an error in GIVE_UP, else after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return future.result(timeout=0.05)
        except concurrent.futures.TimeoutError:
            pass
        for client in CLIENT:
            client.poll(0)
        fatal = [e for e in ERRORS if e.code() in GIVE_UP or e.fatal()]
        if fatal:
            raise KafkaException(fatal[0])
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer within {TIMEOUT}s")


def topic(admin, name):
    try:
        desc = wait(admin.describe_topics(TopicCollection([name]), request_timeout=TIMEOUT)[name])
    except KafkaException as e:
        if absent(e):
            return None
        raise
    partitions = sorted(desc.partitions, key=lambda p: p.id)
    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = wait(admin.describe_configs([resource], request_timeout=TIMEOUT)[resource])
    configs = {
        k: e.value
        for k, e in sorted(entries.items())
        if e.source == 1  # ConfigSource.DYNAMIC_TOPIC_CONFIG: set on this topic
    }
    return {
        "name": name,
        "topic_id": str(desc.topic_id),
        "partitions": len(partitions),
        "replication_factor": len(partitions[0].replicas) if partitions else 0,
        "configs": configs,
        "replicas": [[n.id for n in p.replicas] for p in partitions],
    }


def topic_config(admin, name, key):
    resource = ConfigResource(ResourceType.TOPIC, name)
    try:
        entries = wait(admin.describe_configs([resource], request_timeout=TIMEOUT)[resource])
    except KafkaException as e:
        if absent(e):
            return None
        raise
    entry = entries.get(key)
    return None if entry is None else entry.value


def topics(admin):
    meta = metadata(admin)
    return sorted(t for t in meta.topics if t not in INTERNAL)


def create_topic(admin, name, partitions, rf):
    new = NewTopic(name, num_partitions=int(partitions), replication_factor=int(rf))
    wait(admin.create_topics([new], request_timeout=TIMEOUT)[name])
    return {"created": name}


def verdict(future):
    """{"ok": true}, or the server's refusal as {"ok": false, "error", "message"}."""
    try:
        wait(future)
        return {"ok": True}
    except KafkaException as e:
        err = e.args[0]
        return {"ok": False, "error": err.name(), "message": err.str()}


def create_topic_with(admin, name, partitions, rf, configs):
    new = NewTopic(name, num_partitions=int(partitions), replication_factor=int(rf),
                   config={k: str(v) for k, v in json.loads(configs).items()})
    return verdict(admin.create_topics([new], request_timeout=TIMEOUT)[name])


def alter(admin, name, key, value):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry
    res = ConfigResource(ResourceType.TOPIC, name,
                         incremental_configs=[ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
    futures = admin.incremental_alter_configs([res], request_timeout=TIMEOUT)
    return verdict(next(iter(futures.values())))


def partitions(admin, name, n):
    from confluent_kafka.admin import NewPartitions
    return verdict(admin.create_partitions([NewPartitions(name, int(n))], request_timeout=TIMEOUT)[name])


def group(admin, group_id):
    def describe():
        return wait(admin.describe_consumer_groups([group_id], request_timeout=TIMEOUT)[group_id])

    try:
        desc = coordinated(describe)
    except KafkaException as e:
        if absent(e):
            return None
        raise
    state = desc.state.name if hasattr(desc.state, "name") else str(desc.state)
    if state == "DEAD":  # what older brokers answer for a group that does not exist
        return None
    request = [ConsumerGroupTopicPartitions(group_id)]
    answer = coordinated(
        lambda: wait(admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT)[group_id])
    )
    offsets = {}
    for tp in answer.topic_partitions:
        if tp.offset >= 0:
            offsets.setdefault(tp.topic, {})[str(tp.partition)] = tp.offset
    return {"state": state, "members": len(desc.members), "offsets": offsets}


def groups(admin):
    answer = wait(admin.list_consumer_groups(request_timeout=TIMEOUT))
    return sorted(g.group_id for g in answer.valid)


def acls(admin, principal):
    flt = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        principal,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    bindings = wait(admin.describe_acls(flt, request_timeout=TIMEOUT))
    out = [
        {
            "resource_type": b.restype.name,
            "resource_name": b.name,
            "pattern_type": b.resource_pattern_type.name,
            "principal": b.principal,
            "host": b.host,
            "operation": b.operation.name,
            "permission": b.permission_type.name,
        }
        for b in bindings
    ]
    return sorted(out, key=lambda a: json.dumps(a, sort_keys=True))


def produce(conf, name, n):
    producer = Producer(conf)
    CLIENT[:] = [producer]
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(str(err))

    meta = metadata(producer, name).topics[name]
    if meta.error is not None:
        raise KafkaException(meta.error)
    if not meta.partitions:
        raise RuntimeError(f"topic {name} has no partitions")
    count = len(meta.partitions)
    for i in range(int(n)):
        producer.produce(name, value=f"m{i}".encode(), partition=i % count, on_delivery=delivered)
    left = producer.flush(TIMEOUT)
    if left or failures:
        raise RuntimeError(f"{left} messages unsent, failures: {failures[:3]}")
    return {"produced": int(n)}


def join(conf, group_id, name):
    """A live member of the group until stdin closes: prints {"joined": ...} once assigned."""
    from confluent_kafka import Consumer
    consumer = Consumer({**conf, "group.id": group_id, "enable.auto.commit": False,
                         "session.timeout.ms": 10000})
    CLIENT[:] = [consumer]
    assigned = []
    consumer.subscribe([name], on_assign=lambda _c, parts: assigned.extend(parts))
    import select
    announced = False
    while True:
        consumer.poll(0.2)
        if assigned and not announced:
            print(json.dumps({"joined": group_id, "partitions": len(assigned)}), flush=True)
            announced = True
        if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
            break
    consumer.close()
    return {"left": group_id}


def cluster(admin):
    desc = wait(admin.describe_cluster(request_timeout=TIMEOUT))
    return {
        "cluster_id": desc.cluster_id,
        "controller": desc.controller.id if desc.controller is not None else None,
        "brokers": len(desc.nodes),
        "broker_ids": sorted(n.id for n in desc.nodes),
    }


COMMANDS = {
    "topic": (topic, 1),
    "topic-config": (topic_config, 2),
    "topics": (topics, 0),
    "create-topic": (create_topic, 3),
    "group": (group, 1),
    "groups": (groups, 0),
    "acls": (acls, 1),
    "produce": (produce, 2),
    "cluster": (cluster, 0),
    "create-topic-with": (create_topic_with, 4),
    "alter": (alter, 3),
    "partitions": (partitions, 2),
    "join": (join, 2),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--sasl-user")
    parser.add_argument("--sasl-password", default="")
    parser.add_argument("--sasl-mechanism", default="SCRAM-SHA-512")
    parser.add_argument("--ssl-ca")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()
    func, arity = COMMANDS[args.command]
    if len(args.args) != arity:
        parser.error(f"{args.command} takes {arity} arguments, got {args.args}")
    conf = client_config(args)
    try:
        if args.command in ("produce", "join"):
            answer = func(conf, *args.args)
        else:
            admin = AdminClient(conf)
            CLIENT[:] = [admin]
            answer = func(admin, *args.args)
    except Exception as e:  # one line for the Rust side's panic message
        for client in CLIENT:
            client.poll(0)  # the errors behind a failure, if librdkafka has them
        seen = "; ".join(str(err) for err in ERRORS[:3])
        seen = f" (client errors: {seen})" if seen else ""
        print(f"{args.command} failed: {e!r}{seen}", file=sys.stderr)
        sys.exit(1)
    json.dump(answer, sys.stdout, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
