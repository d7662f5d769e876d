"""The capability rules every host of the component enforces, read from policy.json: the
output of the Rust CLI's `eventbus policy`, shipped with this package (the polyglot test checks
the copy is current). The tables the checks use come from it, not from a copy kept here."""

from __future__ import annotations

import json
from importlib import resources


def load() -> dict:
    return json.loads(resources.files(__package__).joinpath("policy.json").read_text())


POLICY = load()
MUTATING_EXPORTS: tuple[str, ...] = tuple(POLICY["mutating_exports"])
READ_ONLY_METHODS: tuple[str, ...] = tuple(POLICY["http"]["read_only_methods"])
# (verb tokens, how many names follow, whether it changes the server)
NATS_OPERATIONS: list[tuple[list[str], int, bool, str]] = [
    (o["verb"].split("."), int(o["names"]), bool(o["changes"]), o["verb"]) for o in POLICY["nats"]["operations"]
]
