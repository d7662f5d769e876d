"""Loading the component under wasmtime-py and providing its imports.

One `Runtime` compiles the component once (cached on disk by its sha256 and the wasmtime
version) and links the imports; `Runtime.instance()` makes a fresh `Guest` in its own store,
with WASI granting nothing (no env, args, files, sockets or stdio). The imports are synchronous
calls in wasmtime-py; the NATS client (asyncio) runs on a loop of its own and each request is
waited for. Every export call carries a `CallGrant` (read-only, or mutating and scoped to its
resource) that the capabilities ask before they act.

Values cross as wasmtime-py represents them: records as `Record` (fields with dashes),
variants as `Variant(tag, payload)`. Here they become dicts with snake_case keys."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import wasmtime
from wasmtime import Config, Engine, Store, WasiConfig
from wasmtime.component import Component, Linker, Record, ResourceHost, ResourceType, Variant

from . import oci
from .caps import CapError
from .caps import secrets as secrets_cap
from .caps.grant import CallGrant
from .caps.http import HttpCap
from .caps.nats import BrokerEntry, NatsCap, api_prefix
from .caps.nats import Auth as NatsAuth
from .caps.secrets import SecretStore

log = logging.getLogger("eventbus_host")
guest_log = logging.getLogger("eventbus_host.guest")

PKG = "eventbus:iac"
VERSION = "0.1.0"
NATS_CONNECTION, KAFKA_CONNECTION = 1, 2
MEMORY_BYTES = 64 << 20


def iface(name: str) -> str:
    return f"{PKG}/{name}@{VERSION}"


class ProviderError(Exception):
    """The component's `provider-error`: kind (validation, not-found, ...) and payload."""

    def __init__(self, kind: str, payload):
        self.kind = kind
        self.payload = payload
        super().__init__(error_text(kind, payload))


class Trap(Exception):
    """The component trapped: its instance is dropped, never used again."""


def error_text(kind: str, payload) -> str:
    if kind == "validation" and isinstance(payload, list):
        return "; ".join(f"{d.get('resource', '')}: {d.get('path', '')}: {d.get('message', '')} (fix: {d.get('fix', '')})" for d in payload)
    return f"{kind}: {payload}"


def to_wit(v):
    """dicts (snake_case keys) to records, recursively; lists and tuples through."""
    if isinstance(v, dict):
        r = Record()
        for k, x in v.items():
            setattr(r, k.replace("_", "-"), to_wit(x))
        return r
    if isinstance(v, list):
        return [to_wit(x) for x in v]
    if isinstance(v, tuple):
        return tuple(to_wit(x) for x in v)
    return v


def from_wit(v):
    if isinstance(v, Record):
        return {k.replace("-", "_"): from_wit(x) for k, x in vars(v).items()}
    if isinstance(v, Variant):
        return Variant(v.tag, from_wit(v.payload))
    if isinstance(v, list):
        return [from_wit(x) for x in v]
    if isinstance(v, tuple):
        return tuple(from_wit(x) for x in v)
    return v


def cap_err(e: CapError) -> Variant:
    return Variant(e.kind, e.message)


@dataclass
class Connection:
    entry: BrokerEntry
    client: object
    broker: str
    prefix: str
    server_version: str


class Caps:
    """Everything the instances share: grants, connections, secrets."""

    def __init__(self, secrets: SecretStore, provider_config: dict | None = None, max_payload: int = 1 << 20) -> None:
        self.secrets = secrets
        self.nats = NatsCap(secrets, max_payload)
        self.http = HttpCap(provider_config or {}, secrets, max_payload)
        self.max_payload = max_payload

    def register_broker(self, name: str, outputs: dict) -> None:
        if isinstance(outputs, dict) and outputs.get("bus") != "kafka":
            self.nats.register_broker(name, outputs)

    def grant_broker_outputs(self, outputs: dict) -> None:
        if isinstance(outputs, dict) and outputs.get("bus") != "kafka":
            for u in outputs.get("urls") or []:
                if isinstance(u, str):
                    self.nats.grant(u)

    def close(self) -> None:
        self.nats.close()


def component_path(explicit: str | os.PathLike | None = None) -> Path:
    """--component, $EVENTBUS_COMPONENT (a file, or oci://REGISTRY/REPO@sha256:<digest>, pulled and
    verified by oci.py), or the release build in the repository this runs from."""
    for p in (explicit, os.environ.get("EVENTBUS_COMPONENT")):
        if p and oci.is_reference(p):
            return oci.fetch(str(p))
        if p:
            return Path(p)
    here = Path.cwd()
    for d in (here, *here.parents):
        c = d / "target/wasm32-wasip2/release/eventbus_guest.wasm"
        if c.is_file():
            return c
    raise FileNotFoundError(
        "cannot find the component eventbus_guest.wasm: pass --component PATH or set EVENTBUS_COMPONENT "
        "(build it with `cargo build -p eventbus-guest --target wasm32-wasip2 --release`)"
    )


def _compile(engine: Engine, wasm: Path) -> Component:
    """Compiling takes seconds; the result is kept under the wasm's sha256 and this wasmtime's
    version in $EVENTBUS_CACHE_DIR (default ~/.cache/eventbus_host), private to the user."""
    data = wasm.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cache = Path(os.environ.get("EVENTBUS_CACHE_DIR") or Path.home() / ".cache/eventbus_host")
    cached = cache / f"{digest}-wasmtime-{metadata.version('wasmtime')}.cwasm"
    if cached.is_file():
        try:
            return Component.deserialize_file(engine, str(cached))
        except wasmtime.WasmtimeError:
            cached.unlink(missing_ok=True)
    component = Component(engine, data)
    try:
        secrets_cap.write_private(cached, bytes(component.serialize()))
    except OSError as e:
        log.debug("not caching the compiled component in %s: %s", cache, e)
    return component


class Runtime:
    def __init__(self, wasm: Path, caps: Caps) -> None:
        started = time.monotonic()
        self.caps = caps
        self.engine = Engine(Config())
        self.component = _compile(self.engine, Path(wasm))
        self.linker = Linker(self.engine)
        self.linker.add_wasip2()
        self._conns: dict[int, Connection] = {}
        self._reps = itertools.count(1)
        self.current: Guest | None = None
        self._define()
        self.load_time = time.monotonic() - started

    def instance(self) -> "Guest":
        return Guest(self)

    # -- the imports ------------------------------------------------------------------------

    def _grant(self) -> CallGrant:
        return self.current.grant if self.current is not None else CallGrant.read_only()

    def _conn(self, store, this) -> Connection:
        return self._conns[this.to_host(store).rep]

    def _define(self) -> None:
        caps = self.caps
        with self.linker.root() as root:
            with root.add_instance(iface("capability-types")):
                pass
            with root.add_instance(iface("types")):
                pass
            with root.add_instance(iface("nats")) as n:
                n.add_resource("connection", ResourceType.host(NATS_CONNECTION), lambda store, rep: self._conns.pop(rep, None))
                n.add_func("[static]connection.open-broker", self._open_broker)
                n.add_func("[static]connection.open-endpoint", self._open_endpoint)
                n.add_func("[method]connection.broker", lambda s, this: self._conn(s, this).broker)
                n.add_func("[method]connection.api-prefix", lambda s, this: self._conn(s, this).prefix)
                n.add_func("[method]connection.server-version", lambda s, this: self._conn(s, this).server_version)
                n.add_func("[method]connection.endpoint", self._endpoint)
                n.add_func("[method]connection.request", self._request)
            with root.add_instance(iface("kafka")) as k:
                # Kafka administration is the Rust host's: this host knows no Kafka broker and
                # grants no Kafka endpoint (a plan of new Kafka resources still works, as the Rust
                # CLI's does before their broker exists), so the methods, which need a
                # connection, are never reached.
                rust = "Kafka is not offered by the Python host: run this file with the Rust CLI (`eventbus`)"

                def unreachable(*_):
                    raise RuntimeError("no Kafka connection exists in the Python host")

                k.add_resource("connection", ResourceType.host(KAFKA_CONNECTION), lambda store, rep: None)
                k.add_func(
                    "[static]connection.open-broker",
                    lambda s, b: Variant("unknown", f"Kafka broker {json.dumps(b)} is not known to the host: {rust}"),
                )
                k.add_func("[static]connection.open-endpoint", lambda s, e: Variant("denied", rust))
                for m in ("broker", "endpoint", "api-versions", "request"):
                    k.add_func(f"[method]connection.{m}", unreachable)
            with root.add_instance(iface("brokers")) as b:
                b.add_func("bus", self._bus)
            with root.add_instance(iface("cloud")) as c:
                c.add_func(
                    "call",
                    lambda s, account, req: Variant(
                        "denied",
                        f"cloud account {json.dumps(account)}: cloud APIs are not offered by the Python host; "
                        "deploy targets other than self_hosted need the Rust CLI (`eventbus`)",
                    ),
                )
            with root.add_instance(iface("http")) as h:
                h.add_func("fetch", self._fetch)
            with root.add_instance(iface("secrets")) as s:
                s.add_func("named", lambda st, name: self._cap(lambda: secrets_cap.named(caps.secrets, name)))
                s.add_func(
                    "generate",
                    lambda st, name, length: self._cap(lambda: secrets_cap.generate(caps.secrets, self._grant(), name, length)),
                )
            with root.add_instance(iface("log")) as lg:
                lg.add_func("log", self._log)

    @staticmethod
    def _cap(f):
        try:
            return f()
        except CapError as e:
            return cap_err(e)

    def _new_conn(self, c: Connection) -> ResourceHost:
        rep = next(self._reps)
        self._conns[rep] = c
        return ResourceHost.own(rep, NATS_CONNECTION)

    def _connection(self, name: str, entry: BrokerEntry):
        client = self.caps.nats.connect(entry)
        v = client.connected_server_version
        version = f"{v.major}.{v.minor}.{v.patch}" + (f"-{v.prerelease}" if v.prerelease else "")
        return self._new_conn(Connection(entry, client, name, api_prefix(entry.domain), version))

    def _open_broker(self, store, broker: str):
        log.debug("nats.open_broker %s", broker)

        def go():
            name, entry = self.caps.nats.entry(broker)
            return self._connection(name, entry)

        return self._cap(go)

    def _open_endpoint(self, store, endpoint):
        urls = list(getattr(endpoint, "urls"))
        domain = getattr(endpoint, "domain")
        auth = getattr(endpoint, "auth")

        def go():
            if not urls or len(urls) > 16:
                raise CapError.invalid("an endpoint needs 1 to 16 urls")
            if domain is not None and (not domain or any(c in domain for c in ".*> ")):
                raise CapError.invalid(f"{json.dumps(domain)} is not a JetStream domain")
            a = None
            if auth is not None:
                payload = auth.payload
                a = NatsAuth(auth.tag, tuple(payload) if isinstance(payload, tuple) else (payload,))
            return self._connection("", BrokerEntry(tuple(urls), a, domain))

        return self._cap(go)

    def _endpoint(self, store, this):
        e = self._conn(store, this).entry
        auth = None
        if e.auth is not None:
            auth = Variant(e.auth.kind, e.auth.values if e.auth.kind == "user-password" else e.auth.values[0])
        return to_wit({"urls": list(e.urls), "auth": auth, "domain": e.domain})

    def _request(self, store, this, subject: str, payload: bytes, timeout_ms: int):
        c = self._conn(store, this)
        return self._cap(lambda: self.caps.nats.request(c.client, c.prefix, c.broker, self._grant(), subject, bytes(payload), timeout_ms))

    def _bus(self, store, broker: str):
        def go():
            return "nats" if self.caps.nats.entry(broker) else ""

        return self._cap(go)

    def _fetch(self, store, req):
        def go():
            status, headers, body = self.caps.http.fetch(
                self._grant(), req.method, req.url, [tuple(h) for h in req.headers], bytes(getattr(req, "body"))
            )
            return to_wit({"status": status, "headers": headers, "body": body})

        return self._cap(go)

    def _log(self, store, level: str, message: str, fields) -> None:
        def cut(s: str) -> str:
            return self.caps.secrets.redact(s[: 4096 + (64 << 10)])[:4096]

        text = cut(message) + cut("".join(f" {k}={v}" for k, v in fields))
        lvl = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}[level]
        guest_log.log(lvl, "%s", text)


class Guest:
    """One instance of the component in its own store. A trap poisons it: later calls refuse."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.store = Store(rt.engine)
        self.store.set_wasi(WasiConfig())
        self.store.set_limits(memory_size=MEMORY_BYTES)
        self.instance = rt.linker.instantiate(self.store, rt.component)
        self.grant = CallGrant.read_only()
        self.poisoned = False
        self._funcs: dict[tuple[str, str], object] = {}

    def _func(self, interface: str, name: str):
        key = (interface, name)
        if key not in self._funcs:
            i = self.instance.get_export_index(self.store, iface(interface))
            idx = self.instance.get_export_index(self.store, name, i) if i is not None else None
            f = self.instance.get_func(self.store, idx) if idx is not None else None
            if f is None:
                raise Trap(f"the component does not export {iface(interface)}#{name}")
            self._funcs[key] = f
        return self._funcs[key]

    def call(self, interface: str, name: str, *args, grant: CallGrant | None = None):
        """Calls an export; returns its value, raises ProviderError for its error, Trap if it trapped."""
        if self.poisoned:
            raise Trap("this instance trapped earlier and is not used again")
        f = self._func(interface, name)
        self.grant = grant or CallGrant.read_only(name)
        self.rt.current = self
        try:
            out = f(self.store, *[to_wit(a) for a in args])
            f.post_return(self.store)
        except wasmtime.WasmtimeError as e:
            self.poisoned = True
            raise Trap(self.rt.caps.secrets.redact(str(e))) from None
        finally:
            self.rt.current = None
            self.grant = CallGrant.read_only()
        out = from_wit(out)
        if isinstance(out, Variant):
            raise ProviderError(out.tag, out.payload)
        return out

    # provider
    def initialize(self, config_json: str) -> None:
        self.call("provider", "initialize", config_json)

    def plan(self, desired: list[dict], current: list[dict]) -> dict:
        return self.call("provider", "plan", desired, current)

    def validate(self, desired: list[dict]) -> None:
        self.call("provider", "validate", desired)

    def name(self) -> str:
        return self.call("provider", "name")

    def status(self, refs: list[dict]) -> list[dict]:
        return self.call("provider", "status", refs)

    # driver: the mutating calls are scoped to their resource
    def create(self, spec: dict) -> dict:
        return self.call("driver", "create", spec["resource_type"], spec, grant=CallGrant.mutating("create", [spec], []))

    def update(self, ref: dict, spec: dict) -> dict:
        return self.call("driver", "update", ref["resource_type"], ref, spec, grant=CallGrant.mutating("update", [spec], [ref]))

    def delete(self, ref: dict) -> None:
        self.call("driver", "delete", ref["resource_type"], ref, grant=CallGrant.mutating("delete", [], [ref]))

    def read(self, ref: dict) -> dict:
        return self.call("driver", "read", ref["resource_type"], ref)

