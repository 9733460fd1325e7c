"""Identity resolution: one contact per person, whatever order the evidence arrives in."""

from __future__ import annotations

import itertools

import pytest

from services.segment.identity import contact_id_for, person_identities, resolve
from shared.envelope import Identity

T = "acme"
O, U, E, C = ("openid", "o1"), ("unionid", "u1"), ("external_userid", "wm1"), ("crm_id", "C-1")  # noqa: E741


def cid(key):
    return contact_id_for(T, *key)


def test_person_identities_ignore_non_person_ids():
    identity = Identity(
        openid="o1", unionid="u1", chat_id="wr1", staff_userid="zhang", account_key="x"
    )
    assert person_identities(identity) == [U, O]


@pytest.mark.parametrize(
    ("identities", "known", "contact", "create", "link", "merge"),
    [
        # a stranger: a new contact named by its (smallest) identity
        ([O], {}, cid(O), True, (O,), ()),
        ([O, U], {}, min(cid(O), cid(U)), True, (O, U), ()),
        # a known person: nothing to create, nothing to link
        ([O], {O: "c_x"}, "c_x", False, (), ()),
        # a known person shows a new id: link it to the contact...
        ([O, U], {O: "c_000"}, "c_000", False, (U,), ()),
        # ...and when the new id hashes smaller, the contact is re-keyed to it (order-free ids)
        ([O, U], {O: "c_zzz"}, cid(U), True, (U,), ("c_zzz",)),
        # the unionid joins two contacts: one survives, the smaller id
        ([O, E], {O: "c_b", E: "c_a"}, "c_a", False, (), ("c_b",)),
        ([U, O, E], {O: "c_000", E: "c_zzz"}, "c_000", False, (U,), ("c_zzz",)),
    ],
    ids=[
        "stranger",
        "stranger with two ids",
        "known",
        "known shows a new id",
        "known, new id hashes smaller: re-keyed",
        "unionid joins two contacts",
        "unionid joins two contacts, new id linked",
    ],
)
def test_resolution_plans(identities, known, contact, create, link, merge):
    plan = resolve(T, identities, known)
    assert plan.contact_id == contact
    assert plan.create is create
    assert plan.link == link
    assert plan.merge == merge


def test_no_person_identity_is_an_error():
    with pytest.raises(ValueError):
        resolve(T, [], {})


def simulate(events: list[list[tuple[str, str]]]) -> dict[tuple[str, str], str]:
    """Apply plans to an in-memory identity map, as the store does."""
    known: dict = {}
    for identities in events:
        plan = resolve(T, identities, known)
        for key, contact in list(known.items()):
            if contact in plan.merge:
                known[key] = plan.contact_id
        for key in plan.link:
            known[key] = plan.contact_id
    return known


def test_any_order_gives_the_same_contacts():
    # openid alone, then openid+unionid (OA), then external+unionid (WeCom), then CRM id with unionid
    evidence = [[O], [U, O], [U, E], [C, U], [("openid", "o2")]]
    results = {
        tuple(sorted(simulate(list(order)).items())) for order in itertools.permutations(evidence)
    }
    assert len(results) == 1
    (final,) = results
    contacts = {contact for _, contact in final}
    assert len(contacts) == 2  # o1/u1/wm1/C-1 are one person; o2 is another
