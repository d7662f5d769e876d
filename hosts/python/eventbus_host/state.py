"""The state file, in the Rust CLI's format (`{"version": 1, "resources": [record...]}`), so
either host can read what the other wrote. Rewritten atomically (temp, fsync, rename) after
every successful action; an OS lock (released if the holder dies) keeps two applies apart."""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
from pathlib import Path

from .caps.secrets import write_private
from .infra import PROVIDER_NAME


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class State:
    def __init__(self, path: Path, lock: bool = False) -> None:
        self.path = Path(path)
        self._lock = None
        if lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = open(f"{self.path}.lock", "a+")
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(f"{self.path} is locked by another apply: wait for it, or see `eventbus unlock`") from None
        self.resources: list[dict] = []
        if self.path.is_file():
            data = json.loads(self.path.read_text() or "{}")
            self.resources = data.get("resources", [])
            # A journal left by the Rust CLI's interrupted apply: replay it (a torn last line is skipped).
            journal = Path(f"{self.path}.journal")
            if journal.is_file():
                for line in journal.read_text().splitlines():
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue
                    if e.get("op") == "upsert":
                        self._upsert(e["record"])
                    elif e.get("op") == "remove":
                        self.resources = [r for r in self.resources if r["name"] != e["name"]]

    def get(self, name: str) -> dict | None:
        return next((r for r in self.resources if r["name"] == name), None)

    def _upsert(self, record: dict) -> None:
        for i, r in enumerate(self.resources):
            if r["name"] == record["name"]:
                self.resources[i] = record
                return
        self.resources.append(record)

    def upsert(self, record: dict) -> None:
        self._upsert(record)
        self.save()

    def remove(self, name: str) -> None:
        self.resources = [r for r in self.resources if r["name"] != name]
        self.save()

    def save(self) -> None:
        write_private(self.path, json.dumps({"version": 1, "resources": self.resources}, indent=2).encode())
        journal = Path(f"{self.path}.journal")
        if journal.exists():
            journal.unlink()

    def to_wit(self) -> list[dict]:
        return [
            {
                "id": r["name"],
                "name": r["name"],
                "resource_type": r["type"],
                "provider": r.get("provider", PROVIDER_NAME),
                "provider_ref": r.get("provider_ref", ""),
                "provider_id": r["provider_id"],
                "config_hash": r.get("config_hash", ""),
                "applied_config_json": json.dumps(r.get("applied_config"), sort_keys=True, separators=(",", ":"), ensure_ascii=False),
                "applied_config_source": r.get("applied_config_source", ""),
                "outputs_json": json.dumps(r.get("outputs"), sort_keys=True, separators=(",", ":"), ensure_ascii=False),
                "dependencies": r.get("dependencies", []),
                "created_at": None,
                "updated_at": None,
                "last_drift_check": None,
            }
            for r in self.resources
        ]

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def record_from(spec: dict, out: dict, provider_ref: str, previous: dict | None) -> dict:
    t = now()
    return {
        "name": spec["name"],
        "type": spec["resource_type"],
        "provider": PROVIDER_NAME,
        "provider_ref": provider_ref,
        "provider_id": out["provider_id"],
        "config_hash": hashlib.sha256(spec["config_json"].encode()).hexdigest(),
        "applied_config": json.loads(spec["config_json"]),
        "applied_config_source": "apply",
        "outputs": json.loads(out["outputs_json"]) if out.get("outputs_json") else None,
        "dependencies": spec["depends_on"],
        "created_at": previous["created_at"] if previous else t,
        "updated_at": t,
    }


def default_state_path(file: Path) -> Path:
    return Path(file).resolve().parent / ".eventbus" / "state.json"


def secrets_file(state_path: Path) -> Path:
    return Path(state_path).parent / "secrets.json"

