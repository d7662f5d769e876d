"""The capabilities: the only doors out of the sandbox, one module per WIT import, each owning
its policy check (the rules `eventbus policy` prints, shipped here as policy.json). Every
denial is a `CapError` naming the grant to add; the guest gets it as a typed `cap-error`."""


class CapError(Exception):
    """A `cap-error` for the guest: kind is denied | unavailable | invalid | unknown."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    @staticmethod
    def denied(m: str) -> "CapError":
        return CapError("denied", m)

    @staticmethod
    def unavailable(m: str) -> "CapError":
        return CapError("unavailable", m)

    @staticmethod
    def invalid(m: str) -> "CapError":
        return CapError("invalid", m)

    @staticmethod
    def unknown(m: str) -> "CapError":
        return CapError("unknown", m)
