"""The polyglot sandbox proof's driver for this host (tests/polyglot.rs): runs the hostile
component (tests/hostile) under this host's runtime and capabilities, one fresh instance per
call, and prints what the guest got back. The test judges containment on the servers.

    python -m eventbus_host.probe INPUT.json

INPUT: {"component", "grants": [url], "brokers": {name: outputs}, "secrets": {name: value},
"host_only": {name: value}, "calls": [{"export": create|update|plan|status, "resource_type",
"config": {..., "attack", "params"}}]}. Output: one JSON line per call, {"ok": report} |
{"err": kind, "message": text} | {"trap": text}, and "alive" (a fresh instance still answers)."""

from __future__ import annotations

import json
import logging
import sys

from .caps.grant import CallGrant
from .caps.secrets import SecretStore
from .runtime import Caps, ProviderError, Runtime, Trap


def _report(text: str):
    return json.loads(text[len("report: "):]) if isinstance(text, str) and text.startswith("report: ") else None


def run(inp: dict) -> list[dict]:
    secrets = SecretStore()
    for k, v in inp.get("secrets", {}).items():
        secrets.put(k, v)
    for k, v in inp.get("host_only", {}).items():
        secrets.remember(k, v)
    caps = Caps(secrets, {})
    for u in inp.get("grants", []):
        caps.nats.grant(u)
    for name, outputs in inp.get("brokers", {}).items():
        caps.register_broker(name, outputs)
    rt = Runtime(inp["component"], caps)
    out = []
    try:
        for c in inp["calls"]:
            config = c["config"]
            spec = {"name": "carrier", "resource_type": c["resource_type"], "config_json": json.dumps(config), "size": "", "hints": None, "depends_on": []}
            stream, name = config.get("stream_name"), config.get("name")
            pid = f"local/{stream}/{name}" if isinstance(stream, str) and name else f"local/{name}" if name else ""
            ref = {"name": "carrier", "resource_type": c["resource_type"], "provider_id": pid}
            g = rt.instance()
            try:
                if c["export"] == "create":
                    r = {"ok": json.loads(g.create(spec)["outputs_json"])}
                elif c["export"] == "update":
                    r = {"ok": g.call("driver", "update", c["resource_type"], ref, spec, grant=CallGrant.mutating("update", [spec], [ref]))}
                elif c["export"] == "plan":
                    r = {"ok": g.plan([spec], [])}
                elif c["export"] == "status":
                    r = {"ok": g.status([dict(ref, provider_id=json.dumps(config))])}
                else:
                    raise ValueError(f"unknown export {c['export']}")
            except ProviderError as e:
                rep = _report(e.payload)
                r = {"ok": rep} if rep is not None else {"err": e.kind, "message": str(e.payload)}
            except Trap as e:
                r = {"trap": str(e)}
            try:
                r["alive"] = rt.instance().name() == "hostile"
            except Exception as e:  # noqa: BLE001 - reported, judged by the test
                r["alive"] = False
                r["alive_error"] = str(e)
            out.append(r)
    finally:
        caps.close()
    return out


def main() -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    with open(sys.argv[1]) as f:
        inp = json.load(f)
    for r in run(inp):
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
