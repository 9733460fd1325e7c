"""The simulator's audience model: deterministic, realistic B2B committees and B2C types, and
journeys whose events come in an order the real platforms would produce."""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter, defaultdict

import pytest

from sandbox.population.actions import Action
from sandbox.population.journey import action_stream
from sandbox.population.model import B2C_TYPES, Population
from sandbox.population.texts import TITLES
from shared.companies import account_key
from shared.envelope import EVENT_TYPES
from shared.vocabulary import BUYING_ROLES

CJK = re.compile(r"[\u4e00-\u9fff]")


def actions(mode: str, seed: int, contacts: int, n: int, mean_step_s: int = 1800) -> list[Action]:
    population = Population.generate(random.Random(seed), mode, contacts)
    stream = action_stream(population, random.Random(seed + 1), mean_step_s=mean_step_s)
    return list(itertools.islice(stream, n))


@pytest.mark.parametrize("mode", ["b2b", "b2c"])
def test_same_seed_gives_the_same_population_and_actions(mode):
    first = Population.generate(random.Random(42), mode, 80)
    second = Population.generate(random.Random(42), mode, 80)
    assert first == second
    assert actions(mode, 42, 80, 1500) == actions(mode, 42, 80, 1500)


@pytest.mark.parametrize("mode", ["b2b", "b2c"])
def test_different_seeds_give_different_people_and_actions(mode):
    a = Population.generate(random.Random(1), mode, 50)
    b = Population.generate(random.Random(2), mode, 50)
    assert {p.openid for p in a.people}.isdisjoint(p.openid for p in b.people)
    assert [x.type for x in actions(mode, 1, 50, 300)] != [
        x.type for x in actions(mode, 2, 50, 300)
    ]


def test_identities_look_like_the_platforms_ids_and_are_unique():
    population = Population.generate(random.Random(5), "b2c", 500)
    people = population.people
    assert len(people) == 500
    assert all(len(p.openid) == 28 and p.openid.startswith("o") for p in people)
    assert all(len(p.external_userid) == 32 and p.external_userid.startswith("wm") for p in people)
    for attribute in ("openid", "external_userid", "crm_id", "person_id"):
        assert len({getattr(p, attribute) for p in people}) == 500, attribute
    assert sum(p.unionid is None for p in people) < 100  # most, not all, have a unionid


def test_b2b_companies_have_buying_committees_with_roles_and_bilingual_titles():
    population = Population.generate(random.Random(11), "b2b", 300)
    assert len(population.people) == 300
    assert len({c.key for c in population.companies}) == len(population.companies)
    all_roles: Counter = Counter()
    for company in population.companies:
        assert 2 <= len(company.members) <= 6, company.name
        roles = [m.role for m in company.members]
        assert len(set(roles)) == len(roles)  # one person per role in a committee
        assert "decision_maker" in roles
        assert roles[0] in ("technical", "business")  # the champion who makes first contact
        assert company.name.endswith(("有限公司", "Co., Ltd."))
        assert company.key == account_key(company.name)  # segment's key of the account
        for member in company.members:
            assert member.title in TITLES[member.role]["zh"] + TITLES[member.role]["en"]
            assert member.company_key == company.key
            assert member.unionid
        all_roles.update(roles)
    assert set(all_roles) == set(BUYING_ROLES)
    big = [c for c in population.companies if len(c.members) >= 4]
    assert big
    assert all(len({m.role for m in c.members}) >= 4 for c in big)
    titles = [p.title for p in population.people]
    assert any(CJK.search(t) for t in titles)
    assert any(t.isascii() for t in titles)
    assert any(CJK.search(c.name) for c in population.companies)
    assert any(c.name.isascii() for c in population.companies)
    assert any(c.stall_stage is not None for c in population.companies)
    assert any(c.pays_late for c in population.companies)


def test_company_keys_are_segments_account_keys():
    """The generator keys companies as segment does (shared/companies.py, docs/domain.md), so
    two names of one company (a legal form apart) are never two simulated companies."""
    population = Population.generate(random.Random(3), "b2b", 400)
    keys = {c.key: c.name for c in population.companies}
    assert len(keys) == len(population.companies)
    english = next(c for c in population.companies if c.name.endswith("Co., Ltd."))
    assert " " not in english.key
    assert not english.key.endswith("ltd")
    chinese = next(c for c in population.companies if c.name.endswith("有限公司"))
    assert not chinese.key.endswith("有限公司")


@pytest.mark.parametrize("contacts", [6, 10, 400])
def test_b2c_population_contains_every_consumer_type(contacts):
    population = Population.generate(random.Random(3), "b2c", contacts)
    assert {p.b2c_type for p in population.people} == set(B2C_TYPES)
    assert not population.companies


def test_every_action_has_a_known_type_and_time_moves_forward():
    for mode in ("b2b", "b2c"):
        run = actions(mode, 9, 60, 2000)
        assert {a.kind for a in run} == {"oa", "wecom", "biz"}
        assert all(a.type in EVENT_TYPES for a in run)
        assert all(
            a.type.startswith({"oa": "oa.", "wecom": "wecom.", "biz": "biz."}[a.kind]) for a in run
        )
        times = [a.at for a in run]
        assert times == sorted(times)
        assert len(set(times)) == len(times)
        keys = [a.fields["idempotency_key"] for a in run if a.kind == "biz"]
        assert len(set(keys)) == len(keys)
        msg_ids = [a.fields["MsgId"] for a in run if "MsgId" in a.fields]
        assert len(set(msg_ids)) == len(msg_ids)
        assert all(0 < m < 2**63 for m in msg_ids)


def _first(run: list[Action], account: str, kind: str) -> int | None:
    for i, a in enumerate(run):
        if a.type == kind and a.fields["identity"].get("account_key") == account:
            return i
    return None


def test_b2b_journey_order_no_payment_before_trial_and_quote():
    run = actions("b2b", 21, 120, 12000)
    biz = [a for a in run if a.kind == "biz"]
    accounts = {a.fields["identity"]["account_key"] for a in biz}
    paying = [k for k in accounts if _first(biz, k, "biz.order.paid") is not None]
    assert len(paying) >= 3, "some companies should get as far as paying"
    for key in paying:
        paid = _first(biz, key, "biz.order.paid")
        trial, quote = _first(biz, key, "biz.trial.started"), _first(biz, key, "biz.quote.sent")
        contract = _first(biz, key, "biz.contract.signed")
        lead = _first(biz, key, "biz.lead.created")
        assert None not in (trial, quote, contract, lead), key
        assert lead < trial < quote < contract < paid, key
    # Not every company gets there: some stall on the way.
    assert len(paying) < len(accounts)
    types = Counter(a.type for a in biz)
    for kind in ("biz.webinar.attended", "biz.content.downloaded", "biz.invoice.issued"):
        assert types[kind], kind
    overdue = [a for a in biz if a.type == "biz.invoice.overdue"]
    assert overdue
    assert all(a.fields["attributes"]["days_overdue"] >= 1 for a in overdue)
    for a in biz:
        if a.type in ("biz.order.paid", "biz.invoice.overdue", "biz.quote.sent"):
            assert isinstance(a.fields["attributes"]["amount"], float)
            assert a.fields["attributes"]["currency"] == "CNY"


def test_people_follow_before_they_click_and_are_added_before_they_are_edited():
    for mode in ("b2b", "b2c"):
        following: dict[str, bool] = defaultdict(bool)
        contact: dict[str, bool] = defaultdict(bool)
        for a in actions(mode, 4, 80, 4000):
            if a.kind == "oa":
                who = a.fields["FromUserName"]
                event = a.fields.get("Event")
                if event == "subscribe":
                    assert not following[who], "subscribed twice without unsubscribing"
                    following[who] = True
                elif event == "unsubscribe":
                    assert following[who]
                    following[who] = False
                else:
                    assert following[who], f"{a.type} from {who} who does not follow"
            elif a.fields.get("Event") == "change_external_contact":
                who, change = a.fields["ExternalUserID"], a.fields["ChangeType"]
                if change == "add_external_contact":
                    assert not contact[who]
                    assert a.fields["State"]
                    assert a.fields["WelcomeCode"]
                    assert a.fields["UserID"]
                    contact[who] = True
                else:
                    assert contact[who], f"{change} for {who} who is not a contact"
                    if change in ("del_external_contact", "del_follow_user"):
                        contact[who] = False


def test_customer_groups_are_created_before_members_join_and_versions_chain():
    for mode in ("b2b", "b2c"):
        version: dict[str, str] = {}
        members: dict[str, set] = defaultdict(set)
        joined = 0
        for a in actions(mode, 8, 120, 6000):
            if a.fields.get("Event") != "change_external_chat":
                continue
            chat, change = a.fields["ChatId"], a.fields["ChangeType"]
            assert chat.startswith("wr")
            assert len(chat) == 30
            if change == "create":
                assert chat not in version
                version[chat] = ""
                continue
            assert chat in version, "an event for a group that was never created"
            if change == "dismiss":
                del version[chat]
                continue
            assert a.fields["LastMemVer"] == version[chat] or version[chat] == ""
            version[chat] = a.fields["CurMemVer"]
            items = a.fields["MemChangeList"]
            assert a.fields["MemChangeCnt"] == len(items) >= 1
            if a.fields["UpdateDetail"] == "add_member":
                assert a.fields["JoinScene"] in (0, 3)
                assert members[chat].isdisjoint(items)
                members[chat].update(items)
                joined += 1
            else:
                assert a.fields["QuitScene"] in (0, 1)
                assert set(items) <= members[chat]
                members[chat].difference_update(items)
        assert joined, mode


def test_b2c_behaviour_differs_by_type():
    population = Population.generate(random.Random(31), "b2c", 300)
    stream = action_stream(population, random.Random(32), mean_step_s=3600)
    run = list(itertools.islice(stream, 15000))
    by_id = {p.person_id: p for p in population.people}
    orders, complaints = Counter(), Counter()
    for a in run:
        kind = by_id[a.subject].b2c_type if a.subject in by_id else None
        if a.type == "biz.order.paid":
            orders[kind] += 1
            attrs = a.fields["attributes"]
            assert attrs["currency"] == "CNY"
            assert 0 < attrs["amount"] < 2000
        elif a.type == "biz.complaint.filed":
            complaints[kind] += 1
    per_head = {k: orders[k] / sum(p.b2c_type == k for p in population.people) for k in B2C_TYPES}
    assert per_head["loyal"] > per_head["skeptic"] * 2
    assert per_head["impulse"] > per_head["skeptic"]
    assert complaints["skeptic"] == max(complaints.values())
    lapsed = [p for p in population.people if p.b2c_type == "lapsed"]
    assert sum(p.gone or p.steps > p.lapse_after for p in lapsed) > len(lapsed) // 2
    scenes = {a.fields.get("EventKey") for a in run if a.type == "oa.subscribe"}
    assert "qrscene_store_sh01" in scenes
    coupons = [a for a in run if a.type == "biz.order.paid" and "coupon" in a.fields["attributes"]]
    assert coupons
    assert all(a.fields["attributes"]["discount"] > 0 for a in coupons)
