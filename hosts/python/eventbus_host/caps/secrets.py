"""Secret handles. Values stay in the host: the guest sees only `{{secret:NAME}}` placeholders,
resolved where the host uses them (NATS credentials), masked in every answer going into the
guest and redacted from logs and errors. The same handle format and masking forms as the Rust
host (host/src/caps/secrets.rs)."""

from __future__ import annotations

import json
import os
import secrets as _random
import threading
from pathlib import Path

from . import CapError

PREFIX = "{{secret:"
SUFFIX = "}}"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def handle(name: str) -> str:
    return f"{PREFIX}{name}{SUFFIX}"


def _escape(s: str, go: bool, ascii_only: bool) -> str:
    out = []
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif go and c in "<>&\u2028\u2029":
            out.append(f"\\u{ord(c):04x}")
        elif ord(c) < 0x20 or (ascii_only and ord(c) > 0x7F):
            for unit in c.encode("utf-16-be").hex(" ", 2).split():
                out.append(f"\\u{unit}")
        else:
            out.append(c)
    return "".join(out)


def forms(v: str) -> list[str]:
    """The forms a value takes in text passed on: as is, JSON-escaped (serde, Go, Python
    styles, once or twice), and each of those base64-encoded at the three alignments it can
    have inside a longer encoded string (only the characters that depend on the value alone)."""
    if len(v) < 4:
        return []
    texts = {v}
    for go, ascii_only in ((False, False), (True, False), (False, True), (True, True)):
        once = _escape(v, go, ascii_only)
        texts.add(once)
        texts.add(_escape(once, False, False))
    out = set(texts)
    for text in texts:
        raw = text.encode()
        for offset in range(3):
            data = b"\0" * offset + raw
            first, last = -(-offset * 8 // 6), len(data) * 8 // 6
            core = []
            for i in range(first, last):
                byte, shift = (6 * i) // 8, (6 * i) % 8
                word = (data[byte] << 8) | (data[byte + 1] if byte + 1 < len(data) else 0)
                core.append(_B64[(word >> (10 - shift)) & 63])
            s = "".join(core)
            if len(s) >= 6:
                out.add(s)
                out.add(s.replace("+", "-").replace("/", "_"))
    return sorted(out, key=len, reverse=True)


class SecretStore:
    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._host_only: set[str] = set()
        self._generated_file: Path | None = None
        self._lock = threading.Lock()

    def put(self, name: str, value: str) -> str:
        with self._lock:
            self._values[name] = value
        return handle(name)

    def remember(self, name: str, value: str) -> None:
        """Knows a value only to mask and redact it; no handle resolves to it."""
        self.put(name, value)
        self._host_only.add(name)

    def resolve(self, h: str) -> str | None:
        """The value behind a handle, for the host's own use only."""
        if not (h.startswith(PREFIX) and h.endswith(SUFFIX)):
            return None
        name = h[len(PREFIX):-len(SUFFIX)]
        if name in self._host_only:
            return None
        return self._values.get(name)

    def has(self, name: str) -> bool:
        return name in self._values and name not in self._host_only

    def mask(self, text: str) -> str:
        """Every known value in `text` replaced by its handle (answers going into the guest)."""
        for name, v in list(self._values.items()):
            for f in forms(v):
                if f in text:
                    text = text.replace(f, handle(name))
        return text

    def redact(self, text: str) -> str:
        """Every known value in `text` replaced by [redacted] (logs, errors, output)."""
        for v in list(self._values.values()):
            for f in forms(v):
                text = text.replace(f, "[redacted]")
        return text

    def keep_generated_in(self, path: Path) -> None:
        """Loads secrets generated in earlier runs; keeps new ones in `path` (mode 0600)."""
        if path.exists():
            self._values.update(json.loads(path.read_text()))
        self._generated_file = path

    def generate(self, name: str, length: int) -> str:
        if name in self._values:
            return handle(name)
        n = max(16, min(128, length))
        alphabet = _B64[:62]
        value = "".join(_random.choice(alphabet) for _ in range(n))
        with self._lock:
            self._values[name] = value
        if self._generated_file is not None:
            saved = {}
            if self._generated_file.exists():
                saved = json.loads(self._generated_file.read_text())
            saved[name] = value
            write_private(self._generated_file, json.dumps(saved, indent=2).encode())
        return handle(name)


def write_private(path: Path, data: bytes) -> None:
    """Writes a file only its owner can read, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def lookup_named(name: str) -> str | None:
    """`secret://NAME`: EVENTBUS_SECRET_<NAME> in the environment, or $EVENTBUS_SECRETS_DIR/NAME."""
    var = "".join(c.upper() if c.isascii() and c.isalnum() else "_" for c in name)
    if f"EVENTBUS_SECRET_{var}" in os.environ:
        return os.environ[f"EVENTBUS_SECRET_{var}"]
    d = os.environ.get("EVENTBUS_SECRETS_DIR")
    if not d or "/" in name or "\\" in name or name.startswith("."):
        return None
    p = Path(d) / name
    return p.read_text().rstrip("\r\n") if p.is_file() else None


def named(store: SecretStore, name: str) -> str:
    if store.has(name):
        return handle(name)
    raise CapError.unknown(
        f"secret {json.dumps(name)} is not configured: reference it as secret://{name} and set EVENTBUS_SECRET_{name.upper()}"
    )


def generate(store: SecretStore, grant, name: str, length: int) -> str:
    if not name or len(name) > 200 or "{" in name or "}" in name:
        raise CapError.invalid(f"{json.dumps(name)} is not a secret name")
    # Generating keeps a new secret: a change, so only a mutating call makes one.
    if not grant.mutates and not store.has(name):
        raise CapError.denied(grant.refusal(f"generating the secret {json.dumps(name)}"))
    return store.generate(name, length)
