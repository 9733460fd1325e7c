"""Errors as values with codes a user can act on."""

from __future__ import annotations


class SiyuError(Exception):
    """Base error: a stable machine-readable ``code`` plus a human message."""

    code = "siyu_error"

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


class ConfigError(SiyuError):
    code = "config_error"


class UnknownTenant(SiyuError):
    code = "unknown_tenant"


class MigrationError(SiyuError):
    code = "migration_error"


class DeliveryError(SiyuError):
    """The broker did not acknowledge a record; the caller must not report success."""

    code = "delivery_failed"


class EnvelopeError(SiyuError):
    code = "invalid_envelope"
