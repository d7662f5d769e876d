"""The `nats` capability (host/src/caps/nats.rs): request/reply on whole JetStream management
subjects only (`$JS.API.<verb>[.<stream>[.<consumer>]]`, or `$JS.<domain>.API...`), the
operations policy.json lists, a change only on the call's own stream or consumer, to granted
endpoints only, with credentials the host resolves from handles itself. On nats-py."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass

import nats
from nats.aio.client import Client, RawCredentials

from ..policy import NATS_OPERATIONS
from . import CapError
from .grant import CallGrant
from .secrets import SecretStore

log = logging.getLogger("eventbus_host.nats")
DEFAULT_PORTS = {"nats": 4222, "tls": 4222, "ws": 80, "wss": 443}


def grant_key(url: str) -> str | None:
    """`scheme://host:port`, with NATS's default ports, for comparing grants."""
    if "://" not in url:
        return None
    scheme, rest = url.strip().split("://", 1)
    scheme = scheme.lower()
    hostport = rest.split("/")[0].split("?")[0].rsplit("@", 1)[-1].lower()
    if not hostport or scheme not in DEFAULT_PORTS:
        return None
    head, _, port = hostport.rpartition(":")
    has_port = bool(head) and port.isdigit() and not hostport.endswith("]")
    return f"{scheme}://{hostport}" if has_port else f"{scheme}://{hostport}:{DEFAULT_PORTS[scheme]}"


def as_dialled(url: str) -> str | None:
    """The endpoint nats-py will dial for `url`, read by nats-py's own parser, so a url that a
    plain split reads as a granted host (`nats://evil:1#@granted:2`) is judged by where it goes."""
    try:
        uri = Client._parse_server_uri(url)
    except Exception:  # noqa: BLE001 - any parse failure is a refusal
        return None
    host = uri.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = uri.port or DEFAULT_PORTS.get(uri.scheme, 0)
    return f"{uri.scheme}://{host}:{port}"


@dataclass(frozen=True)
class Auth:
    kind: str  # token | user-password | nkey-seed | creds
    values: tuple[str, ...]


@dataclass(frozen=True)
class BrokerEntry:
    urls: tuple[str, ...]
    auth: Auth | None
    domain: str | None


def auth_from_outputs(a) -> Auth | None:
    if not isinstance(a, dict):
        return None
    kind = a.get("kind")
    if kind == "token" and a.get("token"):
        return Auth("token", (a["token"],))
    if kind == "user_password" and a.get("user") and a.get("password"):
        return Auth("user-password", (a["user"], a["password"]))
    if kind == "nkey" and a.get("nkey_seed"):
        return Auth("nkey-seed", (a["nkey_seed"],))
    if kind == "creds" and a.get("creds"):
        return Auth("creds", (a["creds"],))
    return None


class Loop:
    """One asyncio loop on a thread of its own: the component's imports are synchronous calls,
    nats-py is asyncio, so each request is run there and waited for."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="eventbus-nats", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class NatsCap:
    def __init__(self, secrets: SecretStore, max_payload: int = 1 << 20) -> None:
        self.grants: set[str] = set()
        self.brokers: dict[str, BrokerEntry] = {}
        self.secrets = secrets
        self.max_payload = max_payload
        self._clients: dict[BrokerEntry, Client] = {}
        self._loop: Loop | None = None

    @property
    def loop(self) -> Loop:
        if self._loop is None:
            self._loop = Loop()
        return self._loop

    def grant(self, url: str) -> None:
        k = grant_key(url)
        if k:
            self.grants.add(k)

    def granted(self, url: str) -> bool:
        k = grant_key(url)
        return k is not None and k in self.grants

    def register_broker(self, name: str, outputs: dict) -> None:
        urls = tuple(u for u in outputs.get("urls") or [] if isinstance(u, str))
        if not urls:
            return
        domain = outputs.get("domain") if isinstance(outputs.get("domain"), str) and outputs.get("domain") else None
        self.brokers[name] = BrokerEntry(urls, auth_from_outputs(outputs.get("auth")), domain)

    def forget_broker(self, name: str) -> None:
        self.brokers.pop(name, None)

    def entry(self, name: str) -> tuple[str, BrokerEntry]:
        if not name:
            if len(self.brokers) == 1:
                return next(iter(self.brokers.items()))
            if not self.brokers:
                raise CapError.unknown("no broker is known to the host yet: apply the infra.eventbus resource first")
            raise CapError.unknown(f"several brokers are known ({', '.join(sorted(self.brokers))}): name one with broker_ref")
        if name not in self.brokers:
            raise CapError.unknown(f"broker {json.dumps(name)} is not known to the host (known: {', '.join(sorted(self.brokers))}): apply it first")
        return name, self.brokers[name]

    def connect(self, e: BrokerEntry) -> Client:
        for u in e.urls:
            dialled = as_dialled(u)
            authority = u.split("://", 1)[-1].split("/")[0]
            if "@" in authority or "\\" in authority or not self.granted(u) or dialled is None or dialled not in self.grants:
                raise CapError.denied(
                    f"NATS endpoint {u} is not granted: declare it as the url of a self_hosted infra.eventbus resource, "
                    "or add it to `allow_nats` in the iac.provider module config"
                )
        known = self._clients.get(e)
        if known is not None and known.is_connected:
            return known

        def secret(h: str) -> str:
            v = self.secrets.resolve(h)
            if v is None:
                raise CapError.unknown(f"secret handle {h} is unknown to the host")
            return v

        opts: dict = dict(
            servers=list(e.urls), name="eventbus-iac", connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=0
        )
        if e.auth is not None:
            if e.auth.kind == "token":
                opts["token"] = secret(e.auth.values[0])
            elif e.auth.kind == "user-password":
                opts["user"], opts["password"] = e.auth.values[0], secret(e.auth.values[1])
            elif e.auth.kind == "nkey-seed":
                opts["nkeys_seed_str"] = secret(e.auth.values[0])
            else:
                opts["user_credentials"] = RawCredentials(secret(e.auth.values[0]))

        async def go() -> Client:
            errors: list[str] = []

            async def on_error(err: Exception) -> None:
                errors.append(str(err))

            try:
                return await nats.connect(error_cb=on_error, **opts)
            except Exception as err:  # noqa: BLE001 - every failure is the guest's `cap-error`
                text = self.secrets.redact("; ".join(errors) or str(err) or type(err).__name__)
                if "authorization" in text.lower():
                    raise CapError.denied(f"{','.join(e.urls)}: the server refused the credentials: {text}") from None
                raise CapError.unavailable(f"cannot connect to {','.join(e.urls)}: {text}") from None

        client = self.loop.run(go())
        self._clients[e] = client
        return client

    def request(self, client: Client, prefix: str, broker: str, grant: CallGrant, subject: str, payload: bytes, timeout_ms: int) -> bytes:
        log.debug("nats.request %s (%d bytes)", subject, len(payload))
        try:
            check_subject(prefix, subject)
            check_operation(prefix, subject, broker, grant)
        except CapError:
            log.warning("denied NATS request %s in %s", subject, grant.export or "a call")
            raise
        if len(payload) > self.max_payload:
            raise CapError.invalid(f"request payload of {len(payload)} bytes exceeds the {self.max_payload}-byte limit")
        timeout = min(max(timeout_ms, 100), 60_000) / 1000

        async def go() -> bytes:
            try:
                msg = await client.request(subject, payload, timeout=timeout)
            except nats.errors.TimeoutError:
                raise CapError.unavailable(f"{subject}: no reply within {timeout}s") from None
            except nats.errors.NoRespondersError:
                raise CapError.unavailable(f"{subject}: no responders (is JetStream enabled, and the domain right?)") from None
            except Exception as err:  # noqa: BLE001
                raise CapError.unavailable(f"{subject}: {self.secrets.redact(str(err))}") from None
            return msg.data

        data = self.loop.run(go())
        if len(data) > self.max_payload:
            raise CapError.invalid(f"reply of {len(data)} bytes exceeds the {self.max_payload}-byte limit")
        return data

    def close(self) -> None:
        if self._loop is None:
            return
        for c in self._clients.values():
            try:
                self.loop.run(c.close(), timeout=5)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._clients.clear()
        self._loop.loop.call_soon_threadsafe(self._loop.loop.stop)


def api_prefix(domain: str | None) -> str:
    return f"$JS.{domain}.API" if domain else "$JS.API"


def check_subject(prefix: str, subject: str) -> None:
    """Only complete JetStream API subjects under this connection's prefix: no wildcards, no
    other subjects ($SYS.>, data subjects...)."""
    ok_chars = bool(subject) and len(subject) <= 512 and not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c in "*>" for c in subject)
    rest = subject[len(prefix) + 1:] if subject.startswith(prefix + ".") else ""
    under = bool(rest) and all(t for t in rest.split("."))
    if not (ok_chars and under):
        raise CapError.denied(
            f"subject {json.dumps(subject)} is outside the JetStream management API ({prefix}.>): only JetStream API requests are granted"
        )


def check_operation(prefix: str, subject: str, broker: str, grant: CallGrant) -> None:
    tokens = subject[len(prefix) + 1:].split(".")
    for verb, names, changes, name in NATS_OPERATIONS:
        if len(tokens) == len(verb) + names and tokens[: len(verb)] == verb:
            if not changes:
                return
            args = tokens[len(verb):]
            stream, consumer = args[0], (args[1] if len(args) > 1 else None)
            if grant.may_write(broker, stream, consumer):
                return
            raise CapError.denied(grant.refusal(f"{name} on {'/'.join(args)}"))
    verb = subject[len(prefix):].lstrip(".") if subject.startswith(prefix) else subject
    raise CapError.denied(
        f"JetStream operation {json.dumps(verb)} is not granted: the component may manage streams and durable consumers, never read, "
        f"move or delete messages or administer the cluster or account (granted: {', '.join(o[3] for o in NATS_OPERATIONS)})"
    )
