"""Source channels (渠道): where a contact came from, carried in a channel code's ``state``.

A channel code (docs/domain.md "Channel codes") is a WeCom "contact me" config or customer-group
join code that outreach creates; WeCom returns its ``state`` (at most 30 characters) in the
``add_external_contact`` callback, in ``externalcontact/get`` and per member of a customer group.
Siyu writes the channel into the state itself, ``<channel>.<random>``, so segment learns a
contact's source channel from the touchpoint alone, without asking outreach (services share no
tables), and the contacts of a deleted code keep their channel.
"""

from __future__ import annotations

import re
import secrets
import string

# The channels ops staff pick from; the console labels them (console/labels.py).
SOURCE_CHANNELS = (
    "expo",  # trade fair, exhibition booth
    "article",  # OA article, blog post, white paper
    "ad",  # paid advertising
    "sales_card",  # a salesperson's business card
    "website",  # the corp's web site or mini program
    "event",  # seminar, webinar, salon
    "store",  # shop, counter, packaging
    "referral",  # introduced by a customer or partner
    "other",
)
MAX_STATE = 30  # WeCom: state is at most 30 characters
_ALPHABET = string.ascii_lowercase + string.digits
_STATE = re.compile(r"^([a-z_]{1,12})\.([a-z0-9]{10})$")


def new_state(channel: str) -> str:
    """A fresh state for a code of ``channel``: ``<channel>.<10 random base-36 characters>``."""
    if channel not in SOURCE_CHANNELS:
        raise ValueError(f"unknown source channel {channel!r}")
    return channel + "." + "".join(secrets.choice(_ALPHABET) for _ in range(10))


def channel_of(state: object) -> str | None:
    """The source channel a state names, or None for a state Siyu did not issue (a code made
    in WeCom's own admin, or none at all)."""
    if not isinstance(state, str):
        return None
    m = _STATE.match(state)
    return m.group(1) if m and m.group(1) in SOURCE_CHANNELS else None
