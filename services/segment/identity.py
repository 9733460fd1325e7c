"""Identity resolution, pure: which contact a touchpoint belongs to, and what to link or merge.

One person has several ids (OA openid, WeCom external_userid, unionid, CRM id). A contact's id is
the smallest hash of the identities linked to it. That makes the id a function of the identity
set alone, so the same touchpoints applied in any order (a replay whose partitions interleave
differently) give the same contacts; when a touchpoint joins identities of two contacts (a unionid
seen with an openid and, elsewhere, with an external_userid), both become one: the smaller id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from shared.envelope import Identity

# Identities that name a person. chat_id, staff_userid and account_key name other things.
PERSON_KINDS = ("unionid", "crm_id", "external_userid", "openid")

IdentityKey = tuple[str, str]  # (kind, value)


def contact_id_for(tenant_id: str, kind: str, value: str) -> str:
    digest = hashlib.sha256(f"{tenant_id}\x1f{kind}\x1f{value}".encode()).hexdigest()
    return f"c_{digest[:24]}"


def person_identities(identity: Identity) -> list[IdentityKey]:
    return [(kind, getattr(identity, kind)) for kind in PERSON_KINDS if getattr(identity, kind)]


@dataclass(frozen=True)
class Resolution:
    contact_id: str  # the contact the touchpoint applies to (after links and merges)
    create: bool  # no such contact exists yet
    link: tuple[IdentityKey, ...]  # identities to attach to contact_id
    merge: tuple[str, ...]  # existing contacts to fold into contact_id


def resolve(
    tenant_id: str, identities: list[IdentityKey], known: dict[IdentityKey, str]
) -> Resolution:
    """Plan the resolution of ``identities`` given the contacts ``known`` for some of them."""
    if not identities:
        raise ValueError("a touchpoint without a person identity has no contact")
    involved = {known[i] for i in identities if i in known}
    new = [i for i in identities if i not in known]
    candidates = involved | {contact_id_for(tenant_id, kind, value) for kind, value in new}
    target = min(candidates)
    return Resolution(
        contact_id=target,
        create=target not in involved,
        link=tuple(new),
        merge=tuple(sorted(involved - {target})),
    )
