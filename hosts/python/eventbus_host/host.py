"""The library API: a `Session` is one infra.yaml read, its grants given, the component loaded
and initialized; `plan`, `apply` and `destroy` work as the Rust CLI's commands do
(host/src/commands/), with the same plan and apply results as data.

    from eventbus_host import Session
    with Session("infra.yaml") as s:
        plan = s.plan()            # {"actions": [...], "summary": {...}}
        result = s.apply()         # {"results": [...], "failed": 0, ...}
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .caps.secrets import SecretStore
from .infra import Infra, Invalid, load
from .runtime import Caps, Guest, ProviderError, Runtime, Trap, component_path, error_text
from .state import State, default_state_path, record_from, secrets_file

log = logging.getLogger("eventbus_host")
VERBS = {"create": "create", "update": "update", "replace": "replace", "delete": "delete"}


def _json_of(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def plan_json(plan: dict) -> dict:
    """The plan as `eventbus -o json plan` prints it (host/src/commands/plan.rs `to_json`)."""
    actions = []
    summary = {"create": 0, "update": 0, "replace": 0, "delete": 0}
    for a in plan["actions"]:
        summary[a["action"]] += 1
        r = a["resource"]
        actions.append({
            "action": a["action"],
            "name": r["name"],
            "type": r["resource_type"],
            "provider_id": a["current"]["provider_id"] if a.get("current") else None,
            "config": _json_of(r["config_json"]),
            "depends_on": r["depends_on"],
            "changes": [
                {"path": c["path"], "old": _json_of(c["old_json"]), "new": _json_of(c["new_json"]), "force_new": c["force_new"], "reason": c["reason"]}
                for c in a["changes"]
            ],
            "notes": a["notes"],
        })
    return {"actions": actions, "summary": summary}


class Session:
    def __init__(self, file: str | Path = "infra.yaml", state: str | Path | None = None, component: str | Path | None = None, lock: bool = False) -> None:
        self.started = time.monotonic()
        self.file = Path(file)
        self.state_path = Path(state) if state else default_state_path(self.file)
        self.secrets = SecretStore()
        self.infra: Infra = load(self.file, self.secrets)
        self.state = State(self.state_path, lock=lock)
        self.caps = Caps(self.secrets, self.infra.provider_config)
        for u in self.infra.nats_grants:
            self.caps.nats.grant(u)
        for r in self.state.resources:
            if r["type"] == "infra.eventbus" and isinstance(r.get("outputs"), dict):
                self.caps.grant_broker_outputs(r["outputs"])
                self.caps.register_broker(r["name"], r["outputs"])
        self.secrets.keep_generated_in(secrets_file(self.state_path))
        self.runtime = Runtime(component_path(component), self.caps)
        self.guest = self.runtime.instance()
        view = {k: v for k, v in self.infra.provider_config.items() if k != "cloud_accounts"}
        try:
            self.guest.initialize(json.dumps(view, sort_keys=True, separators=(",", ":")))
        except ProviderError as e:
            raise self._invalid(e, provider=True) or e

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.state.close()
        self.caps.close()

    def _invalid(self, e: ProviderError, provider: bool = False) -> Invalid | None:
        from .infra import Diag

        if e.kind != "validation":
            return None
        types = {s["name"]: s["resource_type"] for s in self.infra.specs}
        return Invalid([
            Diag(str(self.file), self.infra.provider_module if provider else d["resource"],
                 "iac.provider" if provider else types.get(d["resource"], ""), d["path"], d["message"], d["fix"])
            for d in e.payload
        ])

    def _guest(self) -> Guest:
        if self.guest.poisoned:
            self.guest = self.runtime.instance()
            view = {k: v for k, v in self.infra.provider_config.items() if k != "cloud_accounts"}
            self.guest.initialize(json.dumps(view, sort_keys=True, separators=(",", ":")))
        return self.guest

    def raw_plan(self, destroy: bool = False) -> dict:
        desired = [] if destroy else self.infra.specs
        try:
            return self._guest().plan(desired, self.state.to_wit())
        except ProviderError as e:
            raise self._invalid(e) or e

    def plan(self) -> dict:
        return plan_json(self.raw_plan())

    def apply(self, destroy: bool = False, allow_replace: tuple[str, ...] = ()) -> dict:
        """Runs the plan action by action in its order (dependencies first, deletes last),
        saving state after each success; what depends on a failed action is skipped."""
        plan = self.raw_plan(destroy)
        blocked = [
            f"{a['action']} {a['resource']['name']} ({a['resource']['resource_type']})"
            for a in plan["actions"]
            if a["action"] in ("replace", "delete") and _protected(a) and not ({a["resource"]["name"], "*"} & set(allow_replace))
        ]
        if blocked:
            raise RuntimeError(
                f"refusing to change protected resources: {', '.join(blocked)}. Nothing was changed. "
                "Re-run with --allow-replace NAME for each one you mean."
            )
        results, failed_names = [], set()
        for a in plan["actions"]:
            r = a["resource"]
            t = time.monotonic()
            blocker = next((d for d in r["depends_on"] if d in failed_names), None)
            if blocker is not None:
                err = f"skipped: {blocker} failed first"
            else:
                err = self._run(a)
            if err is not None:
                failed_names.add(r["name"])
                log.error("%s %s FAILED: %s", a["action"], r["name"], err)
            else:
                log.info("%s %s done", a["action"], r["name"])
            results.append({"action": a["action"], "name": r["name"], "type": r["resource_type"], "ok": err is None,
                            "error": err, "millis": int((time.monotonic() - t) * 1000)})
        summary = plan_json(plan)["summary"]
        return {"results": results, "summary": summary, "failed": sum(1 for x in results if not x["ok"]), "state": str(self.state_path)}

    def destroy(self) -> dict:
        return self.apply(destroy=True)

    def _run(self, a: dict) -> str | None:
        r = a["resource"]
        cur = a.get("current")
        ref = {"name": r["name"], "resource_type": cur["resource_type"] if cur else r["resource_type"], "provider_id": cur["provider_id"] if cur else ""}
        try:
            if a["action"] in ("delete", "replace"):
                self._guest().delete(ref)
                self.state.remove(r["name"])
                if ref["resource_type"] == "infra.eventbus":
                    self.caps.nats.forget_broker(r["name"])
                if a["action"] == "delete":
                    return None
            out = self._guest().update(ref, r) if a["action"] == "update" else self._guest().create(r)
        except ProviderError as e:
            return self.secrets.redact(error_text(e.kind, e.payload))
        except Trap as e:
            return f"the component trapped: {e}"
        if r["resource_type"] == "infra.eventbus":
            outputs = _json_of(out["outputs_json"])
            if isinstance(outputs, dict):
                self.caps.grant_broker_outputs(outputs)
                self.caps.register_broker(r["name"], outputs)
        self.state.upsert(record_from(r, out, self.infra.provider_module, self.state.get(r["name"])))
        return None


def _protected(a: dict) -> bool:
    def flag(text: str) -> bool:
        v = _json_of(text)
        return isinstance(v, dict) and v.get("protected") in (True, "true")

    return flag(a["resource"]["config_json"]) or bool(a.get("current") and flag(a["current"]["applied_config_json"]))
