"""JSON logs (structlog) for every process, with secrets redacted before anything is written.

Bind ``tenant_id`` and ``event_id`` with ``structlog.contextvars.bind_contextvars`` at the edge
(webhook, consumer step) and every line below carries them.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from shared.privacy import pseudonym

# Keys whose values are never written, wherever they appear in an event (nested too).
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|aes_key|authorization|api_key|signature|dsn)", re.I
)
# A DSN's password part, e.g. postgresql://user:pw@host -> postgresql://user:***@host
_DSN_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
REDACTED = "***"


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 5:
        return value
    if isinstance(value, dict):
        return {
            k: (REDACTED if _SECRET_KEY.search(str(k)) else _redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, str):
        return _DSN_PASSWORD.sub(r"\1***@", value)
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return _redact(event_dict)


# Keys whose values identify a person (docs/privacy.md): logged as a keyed hash, so lines about
# one person still correlate, and an erased person is not left readable in the logs. Matched
# on the key without underscores, case-insensitively (external_userid, ExternalUserID...).
PERSONAL_KEYS = frozenset(
    {
        "openid", "unionid", "externaluserid", "userid", "staffuserid", "crmid", "fromusername",
        "mobile", "phone", "email", "name", "realname", "nickname", "remark", "address",
        "members", "recipient", "touser", "position", "corpname",
    }
)  # fmt: skip


def _personal(key: Any) -> bool:
    return str(key).replace("_", "").replace("-", "").lower() in PERSONAL_KEYS


def _pseudonymise(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple | set):
        return [_pseudonymise(v, depth + 1) for v in value]
    if isinstance(value, dict) and depth < 5:
        return {k: _pseudonymise(v, depth + 1) for k, v in value.items()}
    return pseudonym(str(value))


def _hash_people(value: Any, depth: int = 0) -> Any:
    if depth > 5:
        return value
    if isinstance(value, dict):
        return {
            k: (_pseudonymise(v) if _personal(k) else _hash_people(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_hash_people(v, depth + 1) for v in value]
    return value


def hash_personal_ids(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Replace the values of identity-like keys (``PERSONAL_KEYS``) with keyed hashes."""
    return _hash_people(event_dict)


def configure_logging(level: str = "INFO", *, process: str = "siyu", stream: Any = None) -> None:
    """Route structlog and the stdlib (kafka, gunicorn, werkzeug) through one JSON renderer."""
    shared_processors = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
        hash_personal_ids,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # first: a filtered-out call costs almost nothing
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            lambda _l, _m, ev: {**ev, "process": process},
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kafka-python is chatty at INFO (every reconnect); keep its warnings.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
