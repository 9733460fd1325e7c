"""Segment state is a function of the event log (docs/domain.md "Event time and replay").

The same touchpoints applied to an empty schema through ``consumer.apply_batch`` in different
interleavings (each contact's own order kept, as a partitioned topic does, contacts interleaved
differently), with some events late (delivered after newer ones of their contact, as from another
partition), and in batches of 1, 3 or all, must leave every table of the segment schema the same:
contacts, identities, events, accounts with their stages, stage_history with causes and event
ids, the funnel tables derived from it, segment memberships. B2B accounts have several members
and the model's account rules depend on the roles engaged and on the members' stages.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
import psycopg.rows
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from psycopg import sql

from services.segment.consumer import apply_batch
from services.segment.segments import save_segment
from services.segment.topics import Topics
from shared.envelope import Identity, Touchpoint, make_event_id
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, load_tenants

TENANTS = load_tenants(DEMO_TENANTS_PATH)
TOPICS = Topics.with_prefix("replay.")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# acme (B2B, AISCEAS): two companies; titles give the buying roles that the account rules of
# comparison (3 roles engaged) and examination (technical and finance engaged) look at.
PEOPLE = {
    "li": ("acme", "苏州精工机械有限公司", "IT经理"),  # technical
    "wang": ("acme", "苏州精工机械有限公司", "财务总监"),  # finance
    "zhao": ("acme", "苏州精工机械有限公司", "采购经理"),  # procurement
    "chen": ("acme", "无锡远航科技有限公司", "总经理"),  # decision maker
    "sun": ("acme", "无锡远航科技有限公司", "IT经理"),
    "zhou": ("acme", "无锡远航科技有限公司", "财务总监"),
    "solo": ("acme", None, None),  # no company
    "mei": ("bloom", None, None),  # bloom (B2C, AARRR)
    "lan": ("bloom", None, None),
}
B2B_TYPES = [
    "biz.content.downloaded", "biz.content.downloaded", "biz.content.downloaded",
    "biz.webinar.registered", "biz.webinar.attended", "biz.demo.requested", "biz.trial.started",
    "biz.quote.sent", "biz.order.paid", "biz.contract.signed", "link.clicked",
]  # fmt: skip
B2C_TYPES = ["oa.click", "oa.click", "oa.message", "oa.message", "oa.subscribe", "biz.order.paid"]
# Segments whose rules read the stage and the account: memberships follow them.
SEGMENTS = {
    "acme": [("evaluating", {"stage_at_least": "comparison"}),
             ("account-engaged", {"account": {"roles_engaged": {"gte": 2}}})],
    "bloom": [("retained", {"stage_at_least": "retention"})],
}  # fmt: skip
# Never equal between runs: surrogate ids; the outbox is transport, not state (its rows differ
# by how many batches published profiles); a membership's since is the first batch that saw it;
# the segment definitions are the test's own set-up (saved at the wall clock).
SKIPPED_TABLES = {"outbox", "schema_migrations", "segments"}
SKIPPED_COLUMNS = {"id", "since"}


def touchpoint(n: int, person: str, type_: str, at: datetime) -> Touchpoint:
    tenant, company, title = PEOPLE[person]
    source = {"oa": "wechat_oa", "biz": "api", "link": "link"}[type_.split(".")[0]]
    attributes: dict = {}
    if type_ == "biz.contact.updated":
        attributes = {"name": person, "title": title, "company": company}
    elif type_ == "biz.order.paid":
        attributes = {"amount": 1000 + n, "currency": "CNY"}
    if tenant == "acme":
        identity = Identity(crm_id=f"C-{person}", account_key=company)
    else:
        identity = Identity(openid=f"o-{person}")
    return Touchpoint(
        event_id=make_event_id(tenant, source, f"e{n}"),
        tenant_id=tenant,
        source=source,
        type=type_,
        occurred_at=at,
        received_at=at,
        identity=identity,
        attributes=attributes,
    )


# One event: (person, type index, day, minute). Few minutes and days: equal times are common.
event_spec = st.tuples(
    st.sampled_from(sorted(PEOPLE)),
    st.integers(0, 20),
    st.integers(0, 240),
    st.sampled_from([0, 30]),
)


def journal(specs: list[tuple[str, int, int, int]]) -> list[Touchpoint]:
    """The touchpoints of ``specs``; each B2B person's first event is their CRM record."""
    out, seen = [], set()
    for n, (person, kind, day, minute) in enumerate(specs):
        at = T0 + timedelta(days=day, minutes=minute)
        if PEOPLE[person][0] == "acme" and person not in seen:
            seen.add(person)
            out.append(touchpoint(1000 + n, person, "biz.contact.updated", at - timedelta(days=1)))
        types = B2B_TYPES if PEOPLE[person][0] == "acme" else B2C_TYPES
        out.append(touchpoint(n, person, types[kind % len(types)], at))
    return out


def delivery(events: list[Touchpoint], rng: random.Random, late: int) -> list[Touchpoint]:
    """One delivery order: each contact's events in time order (its partition), contacts
    interleaved at random; then ``late`` events moved after newer events of their contact."""
    queues: dict[str, list[Touchpoint]] = {}
    for tp in sorted(events, key=lambda t: (t.occurred_at, t.event_id)):
        queues.setdefault(tp.key, []).append(tp)
    order: list[Touchpoint] = []
    while queues:
        key = rng.choice(sorted(queues))
        order.append(queues[key].pop(0))
        if not queues[key]:
            del queues[key]
    for _ in range(late):
        i = rng.randrange(len(order))
        tp = order.pop(i)
        order.insert(rng.randrange(i, len(order) + 1), tp)
    return order


def run(conn, schema: str, events: list[Touchpoint], size: int) -> dict[str, list]:
    reset(conn, schema)
    for i in range(0, len(events), size):
        with conn.transaction():
            apply_batch(conn, TENANTS, events[i : i + size], TOPICS)
    return snapshot(conn, schema)


def reset(conn, schema: str) -> None:
    with conn.transaction():
        for table in tables(conn, schema):
            if table != "schema_migrations":
                conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.Identifier(table)))
        for tenant, segments in SEGMENTS.items():
            for segment_id, rule in segments:
                save_segment(conn, tenant, segment_id, segment_id, rule)


def tables(conn, schema: str) -> list[str]:
    return [
        r["table_name"]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type = 'BASE TABLE' ORDER BY 1",
            (schema,),
        )
    ]


def snapshot(conn, schema: str) -> dict[str, list]:
    """Every table of the schema, every column but surrogate ids, rows in a stable order."""
    state = {}
    for table in tables(conn, schema):
        if table in SKIPPED_TABLES:
            continue
        names = [
            r["column_name"]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s ORDER BY ordinal_position",
                (schema, table),
            )
            if r["column_name"] not in SKIPPED_COLUMNS
        ]
        cols = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in names)
        rows = conn.execute(
            sql.SQL("SELECT {} FROM {}").format(cols, sql.Identifier(table))
        ).fetchall()
        state[table] = sorted((tuple(r.values()) for r in rows), key=_nulls_first)
    return state


def _nulls_first(row: tuple) -> tuple:
    return tuple((v is not None, v or "") for v in row)


@pytest.fixture
def conn(stack, schema):
    migrate_service(stack.dsn, "segment", schema=schema)
    with psycopg.connect(  # autocommit: the snapshots hold no transaction open
        stack.dsn,
        options=f"-c search_path={schema}",
        row_factory=psycopg.rows.dict_row,
        autocommit=True,
    ) as c:
        yield c


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is two replays
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=st.lists(event_spec, min_size=4, max_size=40),
    seed=st.integers(0, 2**32 - 1),
    late=st.integers(0, 4),
    size=st.sampled_from([1, 3, 0]),
)
def test_state_does_not_depend_on_batching_or_interleaving(conn, schema, specs, seed, late, size):
    events = journal(specs)
    reference = run(conn, schema, sorted(events, key=lambda t: (t.occurred_at, t.event_id)),
                    len(events))  # fmt: skip
    order = delivery(events, random.Random(seed), late)
    note(f"batch size {size or len(order)}, delivered: {[t.event_id[:6] for t in order]}")
    assert_same(reference, run(conn, schema, order, size or len(order)))


def test_an_account_moves_at_the_members_checkpoints_whatever_the_batching(conn, schema):
    """A committee engages one by one: the account reaches comparison at the event that makes
    three roles engaged (in the 90 days ending then), one event at a time or all at once."""
    specs = [("li", 0, 10, 0), ("li", 1, 11, 0), ("li", 3, 20, 0), ("wang", 0, 30, 0),
             ("zhao", 0, 40, 0), ("sun", 0, 50, 0), ("wang", 1, 200, 0)]  # fmt: skip
    events = journal(specs)
    one_by_one = run(conn, schema, events, 1)
    assert_same(run(conn, schema, list(reversed(events)), len(events)), one_by_one)
    moves = [
        (r[4], r[5], r[6], r[8][:10])
        for r in one_by_one["stage_history"]
        if r[1] == "account" and r[2] == "苏州精工机械"
    ]
    assert moves == [
        (None, "interest", "account facts: stage interest: 2 of oa.click/oa.view/link.clicked/"
         "biz.content.downloaded within 30 days", "2026-03-13"),
        ("interest", "search", "account facts: stage search: 1 of biz.webinar.registered/"
         "biz.demo.requested", "2026-03-22"),
        # At 赵经理's download (day 40): three roles engaged in the 90 days ending then. Later
        # evidence (王总 alone at day 200) does not undo it, nor make it examination.
        ("search", "comparison", "account facts: stage comparison: stage search >= search and "
         "account roles engaged >= 3 (finance, procurement, technical)", "2026-04-11"),
    ]  # fmt: skip


def assert_same(expected: dict[str, list], got: dict[str, list]) -> None:
    for table in expected:
        if expected[table] != got[table]:
            only_expected = [r for r in expected[table] if r not in got[table]][:4]
            only_got = [r for r in got[table] if r not in expected[table]][:4]
            raise AssertionError(f"{table}: expected {only_expected}, got {only_got}")
