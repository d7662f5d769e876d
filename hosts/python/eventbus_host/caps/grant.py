"""What one call into the component may do (host/src/caps/grant.rs): every export is
read-only except the mutating ones (policy.json `mutating_exports`), and a mutating call may
change only its own stream (and its consumers) or consumer, named by its spec or provider id."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

STREAM = "infra.eventbus.stream"
CONSUMER = "infra.eventbus.consumer"


@dataclass(frozen=True)
class Object:
    broker: str | None
    stream: str
    consumer: str | None


@dataclass
class CallGrant:
    export: str = ""
    mutates: bool = False
    objects: list[Object] = field(default_factory=list)

    @staticmethod
    def read_only(export: str = "") -> "CallGrant":
        return CallGrant(export, False, [])

    @staticmethod
    def mutating(export: str, specs: list[dict], refs: list[dict]) -> "CallGrant":
        objects: list[Object] = []
        for o in [x for s in specs for x in _of_spec(s)] + [x for r in refs for x in _of_ref(r)]:
            if o not in objects:
                objects.append(o)
        return CallGrant(export, True, objects)

    def may_write(self, broker: str, stream: str, consumer: str | None) -> bool:
        return self.mutates and any(
            (o.broker is None or o.broker == broker)
            and o.stream == stream
            and (o.consumer is None or o.consumer == consumer)
            for o in self.objects
        )

    def refusal(self, what: str) -> str:
        export = self.export or "this call"
        if not self.mutates:
            return (
                f"{what} changes the server, and `{export}` may only read: changes are granted only "
                "inside create, update, delete, scale and destroy"
            )
        scope = [
            f"consumer {o.stream}/{o.consumer}" if o.consumer else f"stream {o.stream} and its consumers"
            for o in self.objects
        ]
        return f"{what} is outside this `{export}` call's resource: it may change only {', '.join(scope) or 'no JetStream object'}"


def _text(v: dict, key: str) -> str | None:
    x = v.get(key)
    return x if isinstance(x, str) and x else None


def _of_spec(spec: dict) -> list[Object]:
    try:
        config = json.loads(spec["config_json"])
    except (ValueError, KeyError):
        return []
    if not isinstance(config, dict):
        return []
    broker, name = _text(config, "broker_ref"), _text(config, "name")
    if name is None:
        return []
    if spec["resource_type"] == STREAM:
        return [Object(broker, name, None)]
    if spec["resource_type"] == CONSUMER:
        sn = config.get("stream_name")
        streams = [s for s in sn if isinstance(s, str) and s] if isinstance(sn, list) else [x for x in [_text(config, "stream_name")] if x]
        return [Object(broker, s, name) for s in streams]
    return []


def _of_ref(ref: dict) -> list[Object]:
    parts = ref["provider_id"].split("/")
    named = lambda s: s or None  # noqa: E731
    rtype = ref["resource_type"]
    if rtype == STREAM and len(parts) == 1 and parts[0]:
        return [Object(None, parts[0], None)]
    if rtype == STREAM and len(parts) == 2 and parts[1]:
        return [Object(named(parts[0]), parts[1], None)]
    if rtype == CONSUMER and len(parts) == 3 and parts[1] and parts[2]:
        return [Object(named(parts[0]), parts[1], parts[2])]
    return []
