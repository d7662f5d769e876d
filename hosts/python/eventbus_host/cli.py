"""`python -m eventbus_host [plan|apply|destroy] -f infra.yaml`: the Rust CLI's three main
verbs, with its options (-o json, --state, --component, --allow-replace, -v) and exit codes
(plan: 0 no changes, 2 changes, 1 error; apply and destroy: 0 done, 1 failed)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .host import Session
from .infra import Invalid
from .runtime import ProviderError, Trap

SIGIL = {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}
HIDDEN = ("iac_provider", "protected")


def _short(v) -> str:
    return "(unset)" if v is None else v if isinstance(v, str) else json.dumps(v)


def render(source: str, plan: dict) -> str:
    if not plan["actions"]:
        return f"No changes: the live resources match {source}.\n"
    width = max(len(a["type"]) for a in plan["actions"])
    out = [f"Plan for {source}:\n"]
    for a in plan["actions"]:
        out.append(f"  {SIGIL[a['action']]:>3} {a['action']:<7} {a['type']:<{width}}  {a['name']}")
        if a["action"] == "create" and isinstance(a["config"], dict):
            out += [f"          {k}: {_short(v)}" for k, v in a["config"].items() if k not in HIDDEN]
        for c in a["changes"] if a["action"] != "create" else []:
            line = f"          {c['path']}: {_short(c['old'])} -> {_short(c['new'])}"
            out.append(line + (f"   # forces replacement: {c['reason']}" if c["force_new"] else ""))
        out += [f"          note: {n}" for n in a["notes"]]
    s = plan["summary"]
    out.append(f"\nPlan: {s['create']} to create, {s['update']} to update, {s['replace']} to replace, {s['delete']} to delete.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-f", "--file", default=argparse.SUPPRESS, help="the infra.yaml (default infra.yaml)")
    common.add_argument("-o", "--output", choices=["text", "json"], default=argparse.SUPPRESS)
    common.add_argument("--state", default=argparse.SUPPRESS, help="default <file's dir>/.eventbus/state.json")
    common.add_argument("--component", default=argparse.SUPPRESS, help="eventbus_guest.wasm (default $EVENTBUS_COMPONENT, or the repository's release build)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="python -m eventbus_host", parents=[common], description="The eventbus IaC provider component under wasmtime-py.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("plan", parents=[common], help="what apply would do (exit 0 no changes, 2 changes, 1 error)")
    ap = sub.add_parser("apply", parents=[common], help="plan, then apply action by action, saving state after each")
    ap.add_argument("--allow-replace", action="append", default=[], metavar="NAME")
    sub.add_parser("destroy", parents=[common], help="delete consumers, then streams, then brokers")
    a = p.parse_args(argv)
    file, output = getattr(a, "file", "infra.yaml"), getattr(a, "output", "text")
    level = logging.DEBUG if getattr(a, "verbose", False) else getattr(logging, os.environ.get("EVENTBUS_LOG", "warning").upper(), logging.WARNING)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        with Session(file, getattr(a, "state", None), getattr(a, "component", None), lock=a.command != "plan") as s:
            if a.command == "plan":
                plan = s.plan()
                for n in s.infra.skipped:
                    print(f"note: {n}", file=sys.stderr)
                print(json.dumps(plan, indent=2) if output == "json" else render(str(s.file), plan), end="\n" if output == "json" else "")
                return 2 if plan["actions"] else 0
            result = s.apply(destroy=a.command == "destroy", allow_replace=tuple(getattr(a, "allow_replace", [])))
            if output == "json":
                print(json.dumps(result, indent=2))
            else:
                for r in result["results"]:
                    print(f"{r['action']} {r['name']} " + ("done" if r["ok"] else f"FAILED: {r['error']}") + f" ({r['millis']} ms)")
                print(f"\n{a.command.capitalize()} complete: {len(result['results'])} actions, {result['failed']} failed. State: {result['state']}")
            return 1 if result["failed"] else 0
    except Invalid as e:
        if output == "json":
            print(json.dumps({"valid": False, "diagnostics": [vars(d) for d in e.diags]}, indent=2))
        else:
            for d in e.diags:
                print(f"error: {d}", file=sys.stderr)
            print(f"{len(e.diags)} problem{'' if len(e.diags) == 1 else 's'} found; nothing was changed.", file=sys.stderr)
        return 1
    except (ProviderError, Trap, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
