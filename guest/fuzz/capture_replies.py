#!/usr/bin/env python3
"""Captures real JetStream API replies from a local nats-server into corpus/api_reply/.

Usage (from the repo root): python3 guest/fuzz/capture_replies.py [path/to/nats-server]
Speaks the plain NATS protocol (no client library); the requests are the ones the guest
sends (STREAM.CREATE/INFO/UPDATE, CONSUMER.CREATE/INFO/NAMES, DELETE) plus error cases.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "api_reply")
SERVER = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", ".venv", "bin", "nats-server")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Nats:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.line()  # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.fuzz 1\r\nPING\r\n')
        while self.line() != b"PONG":
            pass

    def line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.s.recv(65536)
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def request(self, subject, body=None):
        p = b"" if body is None else json.dumps(body).encode()
        self.s.sendall(b"PUB %s _INBOX.fuzz %d\r\n%s\r\n" % (subject.encode(), len(p), p))
        while True:
            l = self.line()
            if l.startswith(b"MSG "):
                n = int(l.split()[-1])
                while len(self.buf) < n + 2:
                    self.buf += self.s.recv(65536)
                msg, self.buf = self.buf[:n], self.buf[n + 2:]
                return msg
            if l == b"PING":
                self.s.sendall(b"PONG\r\n")


def main():
    store = tempfile.mkdtemp()
    port = free_port()
    srv = subprocess.Popen([SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                nc = Nats(port)
                break
            except OSError:
                time.sleep(0.1)
        os.makedirs(OUT, exist_ok=True)
        week = 604_800_000_000_000
        stream = {"name": "BMW_FULFILLMENT", "subjects": ["bmw.>"], "retention": "limits",
                  "max_age": week, "max_msgs": -1, "max_bytes": -1, "max_msg_size": -1,
                  "max_consumers": -1, "storage": "file", "num_replicas": 1,
                  "duplicate_window": 120_000_000_000, "discard": "old", "pedantic": True}
        consumer = {"name": "orders-intake", "durable_name": "orders-intake",
                    "filter_subject": "bmw.orders.created", "deliver_policy": "all",
                    "ack_policy": "explicit", "ack_wait": 1_000_000_000, "max_deliver": 5,
                    "backoff": [1_000_000_000, 5_000_000_000], "replay_policy": "instant",
                    "max_waiting": 512, "max_ack_pending": 1000,
                    "metadata": {"team": "fulfilment"}}
        push = {"name": "audit-push", "durable_name": "audit-push", "deliver_subject": "audit.deliver",
                "deliver_policy": "new", "ack_policy": "none", "replay_policy": "instant",
                "flow_control": True, "idle_heartbeat": 5_000_000_000}
        A = "$JS.API."
        reqs = [
            ("account_info", "INFO", None),
            ("stream_create", "STREAM.CREATE.BMW_FULFILLMENT", stream),
            ("stream_info", "STREAM.INFO.BMW_FULFILLMENT", None),
            ("stream_update", "STREAM.UPDATE.BMW_FULFILLMENT", dict(stream, max_age=2 * week, description="pilot", metadata={"owner": "bmw"})),
            ("stream_create_exists", "STREAM.CREATE.BMW_FULFILLMENT", dict(stream, max_age=week // 2)),
            ("stream_create_invalid", "STREAM.CREATE.BAD", {"name": "BAD", "subjects": ["bad.>"], "max_age": 1, "pedantic": True}),
            ("stream_create_overlap", "STREAM.CREATE.OTHER", dict(stream, name="OTHER", subjects=["bmw.orders.*"])),
            ("stream_info_missing", "STREAM.INFO.NOPE", None),
            ("stream_create_memory_sealed", "STREAM.CREATE.SEALED", {"name": "SEALED", "subjects": ["sealed.>"], "storage": "memory", "retention": "workqueue", "allow_msg_ttl": True}),
            ("stream_update_sealed", "STREAM.UPDATE.SEALED", {"name": "SEALED", "subjects": ["sealed.>"], "storage": "memory", "retention": "workqueue", "allow_msg_ttl": True, "sealed": True}),
            ("stream_update_immutable", "STREAM.UPDATE.BMW_FULFILLMENT", dict(stream, storage="memory")),
            ("consumer_create", "CONSUMER.CREATE.BMW_FULFILLMENT.orders-intake", {"stream_name": "BMW_FULFILLMENT", "config": consumer, "action": "create", "pedantic": True}),
            ("consumer_create_exists", "CONSUMER.CREATE.BMW_FULFILLMENT.orders-intake", {"stream_name": "BMW_FULFILLMENT", "config": dict(consumer, max_deliver=9), "action": "create"}),
            ("consumer_create_push", "CONSUMER.CREATE.BMW_FULFILLMENT.audit-push", {"stream_name": "BMW_FULFILLMENT", "config": push, "action": "create"}),
            ("consumer_info", "CONSUMER.INFO.BMW_FULFILLMENT.orders-intake", None),
            ("consumer_info_missing", "CONSUMER.INFO.BMW_FULFILLMENT.nope", None),
            ("consumer_names", "CONSUMER.NAMES.BMW_FULFILLMENT", {"offset": 0}),
            ("consumer_delete", "CONSUMER.DELETE.BMW_FULFILLMENT.audit-push", None),
            ("stream_delete", "STREAM.DELETE.SEALED", None),
            ("stream_delete_missing", "STREAM.DELETE.SEALED", None),
        ]
        for name, api, body in reqs:
            reply = nc.request(A + api, body)
            with open(os.path.join(OUT, name + ".json"), "wb") as f:
                f.write(reply)
            print(f"{name}: {reply[:110].decode(errors='replace')}")
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
