"""Signals: the few touchpoints outreach acts on, narrowed to ids and a whitelisted attribute
subset (docs/architecture.md "Topics", docs/security.md). Outreach never reads
``siyu.touchpoints.v1``: its envelopes carry decrypted platform payloads (an OA message's text,
CRM fields). Ingest writes a signal with each touchpoint of these types, in the same hand-off
(services/ingest/publisher.py), on ``siyu.signals.v1`` keyed like the touchpoint.

- ``link.clicked``: campaign_id, content_id, contact_id (the tracked link's own claims);
- ``oa.message``: msg_type only (a reply, never its text);
- ``wecom.contact.added``: welcome_code and state, when either is present (the welcome of an
  add within WeCom's 20 s, and the add's count for its channel code's daily cap: docs/domain.md
  "Welcome on add", "Channel codes");
- ``wecom.contact.half_added``: the same (a half-add, 外部联系人免验证添加成员, may carry the
  WelcomeCode: docs/platform.md "Welcome on add").
"""

from __future__ import annotations

from typing import Any

from shared.envelope import Touchpoint
from shared.messages import SIGNAL, SIGNAL_ATTRIBUTES, encode

IDENTITY = ("openid", "external_userid", "staff_userid")


def signal_of(tp: Touchpoint) -> dict[str, Any] | None:
    """The signal of a touchpoint (without its ``schema``), or None if outreach needs nothing."""
    allowed = SIGNAL_ATTRIBUTES.get(tp.type)
    if allowed is None:
        return None
    if tp.type in ("wecom.contact.added", "wecom.contact.half_added") and not (
        tp.attributes.get("welcome_code") or tp.attributes.get("state")
    ):
        return None
    attributes = {
        k: str(tp.attributes[k]) for k in allowed if tp.attributes.get(k) not in (None, "")
    }
    return {
        "tenant_id": tp.tenant_id,
        "event_id": tp.event_id,
        "type": tp.type,
        "occurred_at": tp.occurred_at.isoformat(),
        "received_at": tp.received_at.isoformat(),
        "identity": {k: getattr(tp.identity, k) for k in IDENTITY},
        "attributes": attributes,
    }


def signal_value(tp: Touchpoint) -> bytes | None:
    """The signal's bytes for the topic (through its schema), or None."""
    value = signal_of(tp)
    return None if value is None else encode(SIGNAL, value)
