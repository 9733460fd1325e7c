"""What `siyu token list` and `siyu ingest token list` print: one line per token, never a secret."""

from __future__ import annotations

from datetime import datetime


def token_status(row: dict, now: datetime) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    return "active"


def _when(label: str, at: datetime | None, otherwise: str) -> str:
    return f"{label} {at.isoformat(timespec='seconds')}" if at else otherwise


def print_tokens(rows: list[dict], now: datetime, *, role: bool = False) -> None:
    """Tab-separated: id, tenant, (role,) status, name, expiry, last use."""
    for row in rows:
        cells = [row["token_id"], row["tenant_id"] or "(platform)"]
        cells += [row["role"]] if role else []
        cells += [
            token_status(row, now),
            row["name"],
            _when("expires", row["expires_at"], "no expiry"),
            _when("last used", row["last_used_at"], "never used"),
        ]
        print("\t".join(cells))
    if not rows:
        print("no tokens")
