"""The eventbus IaC provider component (eventbus_guest.wasm) under wasmtime-py, with the same
capability policy as the Rust host. See host.py for the library API and cli.py for the CLI."""

from .host import Session, plan_json
from .infra import Diag, Invalid
from .runtime import Guest, ProviderError, Runtime, Trap

__all__ = ["Session", "plan_json", "Diag", "Invalid", "Guest", "ProviderError", "Runtime", "Trap"]
