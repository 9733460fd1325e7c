"""Ingest's refusals: each a code a caller can act on, with the HTTP status of
docs/architecture.md ("Errors")."""

from __future__ import annotations

from shared.errors import SiyuError


class Refused(SiyuError):
    """A request we will not turn into an event. Nothing is produced."""

    status = 400

    def __init__(self, code: str, message: str, *, status: int | None = None, details=None):
        super().__init__(message, code=code, details=details)
        if status is not None:
            self.status = status


def missing_signature(what: str) -> Refused:
    return Refused("missing_signature", f"{what} is required", status=401)


def bad_signature(message: str = "signature does not match") -> Refused:
    return Refused("bad_signature", message, status=403)


def unknown(kind: str, value: str) -> Refused:
    return Refused(f"unknown_{kind}", f"no tenant has {kind} {value!r}", status=404)


def malformed(message: str, details=None) -> Refused:
    return Refused("malformed_body", message, status=400, details=details)
