"""Outreach's projection of erasures (services/outreach/erasure.py, docs/privacy.md): a profile
tombstone and an erasure delete the audience row, in whatever order they come; a person back as
someone new after the erasure keeps their new row."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.outreach.erasure import forget
from services.outreach.projection import decode, make_process
from shared import messages
from shared.kafka.consumer import Decoded, Message
from shared.privacy import encode_erasure, identity_hash
from shared.wechat.wecom import WeComUnavailable
from tests.integration.outreach.test_delivery import Crash
from tests.integration.outreach.test_projection import snapshot


def message(topic: str, key: str, value: bytes | None) -> Decoded:
    raw = Message(topic=f"t.{topic}", partition=0, offset=0, key=key.encode(), value=value or b"")
    return Decoded(raw, decode(raw))


def profile(outreach, contact: str, minutes: int) -> Decoded:
    value = snapshot(outreach, contact, minutes)
    value = {**value, "updated_at": value["updated_at"].isoformat(), "model": "aisceas"}
    return message("siyu.profiles.v1", f"acme:{contact}",
                   json.dumps({"schema": messages.PROFILE, **value}).encode())  # fmt: skip


def tombstone(contact: str) -> Decoded:
    return message("siyu.profiles.v1", f"acme:{contact}", None)


def erasure(outreach, contact: str, minutes: int) -> Decoded:
    at = (outreach.now + timedelta(minutes=minutes)).isoformat()
    value = encode_erasure({"tenant_id": "acme", "contact_id": contact, "identity_hashes": [],
                            "erased_at": at})  # fmt: skip
    return message("siyu.erasures.v1", f"acme:{contact}", value)


def audience(outreach) -> list[str]:
    return sorted(r["contact_id"] for r in outreach.sql("SELECT contact_id FROM audience"))


def test_tombstones_and_erasures_delete_in_any_order_but_not_a_newer_person(outreach):
    process = make_process(outreach.pool, clock=lambda: outreach.now)
    process([profile(outreach, "c1", 1), profile(outreach, "c2", 1), profile(outreach, "c3", 1)])
    assert audience(outreach) == ["c1", "c2", "c3"]

    # c1: its profile then its tombstone in one batch; c2: the erasure before the tombstone.
    process([profile(outreach, "c1", 2), tombstone("c1"), erasure(outreach, "c2", 3)])
    assert audience(outreach) == ["c3"]
    process([tombstone("c2")])  # redelivered or late: nothing more to delete

    # c3 is erased, then follows again: its new profile (newer than the erasure) stays, even
    # when the erasure is read after it (another topic) or its tombstone precedes it.
    process([tombstone("c3"), profile(outreach, "c3", 10), erasure(outreach, "c3", 5)])
    assert audience(outreach) == ["c3"]


def test_an_erasure_drops_finished_job_results_that_name_the_person(outreach):
    def job(job_id: str, tenant: str, status: str, result: dict | None) -> None:
        outreach.sql(
            "INSERT INTO jobs (job_id, tenant_id, kind, subject, params, status, result, "
            "expires_at) VALUES (%s, %s, 'preview', 'cmp_1', '{}', %s, %s, now() + interval '1 day')",
            (job_id, tenant, status, None if result is None else json.dumps(result)),
        )

    job("j_names_c1", "acme", "done", {"samples": [{"contact_id": "c1", "name": "Wang"}]})
    job("j_names_c10", "acme", "done", {"samples": [{"contact_id": "c10"}]})  # c1 is a prefix
    job("j_queued", "acme", "queued", None)
    job("j_bloom_c1", "bloom", "done", {"samples": [{"contact_id": "c1"}]})  # another tenant
    make_process(outreach.pool, clock=lambda: outreach.now)([erasure(outreach, "c1", 1)])
    left = sorted(r["job_id"] for r in outreach.sql("SELECT job_id FROM jobs"))
    assert left == ["j_bloom_c1", "j_names_c10", "j_queued"]


def test_an_erasure_requeues_the_running_jobs_so_their_stale_samples_are_never_stored(outreach):
    """A preview running at the time of the erasure read the contacts before it: its runner's
    finish records nothing, and the job runs again after the erasure. Another tenant's running
    job is untouched."""
    from shared import jobs

    ttl = timedelta(hours=24)
    for tenant in ("acme", "bloom"):
        with outreach.pool.connection() as conn:
            jobs.submit(conn, tenant=tenant, kind="preview", subject="cmp_1", params={},
                        created_by=None, ttl=ttl)  # fmt: skip
    with outreach.pool.connection() as conn:  # the runners claim both (before the erasure)
        running = {j["tenant_id"]: j for j in (jobs.claim(conn, ["preview"], 4) for _ in "ab")}
    make_process(outreach.pool, clock=lambda: outreach.now)([erasure(outreach, "c1", 1)])

    stale = {"samples": [{"contact_id": "c1", "name": "Wang"}]}  # read before the erasure
    with outreach.pool.connection() as conn:
        assert not jobs.finish(conn, running["acme"], result=stale, error=None, ttl=ttl)
        assert jobs.finish(conn, running["bloom"], result={"samples": []}, error=None, ttl=ttl)
    (acme,) = outreach.sql("SELECT status, result FROM jobs WHERE tenant_id = 'acme'")
    assert (acme["status"], acme["result"]) == ("queued", None)

    with outreach.pool.connection() as conn:  # it runs again, after the erasure
        again = jobs.claim(conn, ["preview"], 4)
        assert again["job_id"] == running["acme"]["job_id"]
        jobs.heartbeat(conn, running["acme"], 0.9)  # the old runner's beat: not its run any more
        assert jobs.finish(conn, again, result={"samples": []}, error=None, ttl=ttl)
        assert not jobs.finish(conn, running["acme"], result=stale, error=None, ttl=ttl)
    (acme,) = outreach.sql("SELECT status, result FROM jobs WHERE tenant_id = 'acme'")
    assert (acme["status"], acme["result"]) == ("done", {"samples": []})


def _oa_run_of_one(outreach):
    """An OA template campaign due now for c_1 alone; returns it and the OA client."""
    ((_, openid),) = [(e, o) for e, o in outreach.customers(40) if o][:1]
    outreach.profile("c_1", openid=openid, segments=["followers"])
    campaign = outreach.campaign(channel="oa_template", audience={"segments": ["followers"]},
                                 content={"item": outreach.content(fmt="service_notice")},
                                 trigger={"schedule": {"cron": "0 10 * * TUE"}})  # fmt: skip
    assert outreach.schedule() == 1
    return campaign, outreach.clients.oa("acme")


def _erase_during_the_call(outreach, client, monkeypatch, error: BaseException) -> None:
    """c_1 is erased while its send is in flight (the delivery is ``sending``), then the call
    fails with ``error``."""

    def erased_meanwhile(body):
        with outreach.pool.connection() as conn:
            forget(conn, [{"tenant_id": "acme", "contact_id": "c_1", "erased_at": outreach.now}])
        raise error

    monkeypatch.setattr(client, "send_template", erased_meanwhile)


@pytest.mark.parametrize("error", ["temporary", "crash"])
def test_a_delivery_in_flight_when_its_person_is_erased_is_never_attempted_again(
    outreach, monkeypatch, error
):
    """Review of issue 14: the erasure excluded only pending deliveries; one ``sending`` lost its
    address, went back to pending (a temporary error, or a worker crash recovered) and was
    attempted again with no address."""
    campaign, client = _oa_run_of_one(outreach)
    real = client.send_template
    if error == "temporary":
        _erase_during_the_call(outreach, client, monkeypatch, WeComUnavailable(-1, "busy"))
        assert outreach.send() == 1  # the run waits to retry
    else:
        _erase_during_the_call(outreach, client, monkeypatch, Crash())
        with pytest.raises(Crash):
            outreach.send()
    tried: list[dict] = []
    monkeypatch.setattr(client, "send_template", lambda body: tried.append(body) or real(body))
    outreach.now += timedelta(hours=1)  # past the back-off and the dead worker's lease
    outreach.send()
    (delivery,) = outreach.deliveries(campaign)
    assert (delivery["status"], delivery["reason"]) == ("excluded", "erased")
    assert delivery["recipient_id"].startswith("erased:")
    assert delivery["address"] is None
    assert tried == []
    assert outreach.messages("template") == []
    (run,) = outreach.sql("SELECT status FROM campaign_runs WHERE campaign_id = %s", (campaign,))
    assert run["status"] == "done"


def test_an_erasure_takes_the_person_out_of_the_platform_budgets_count(outreach):
    outreach.sql(
        "INSERT INTO platform_sends (tenant_id, recipient, msgid, sent_at, origin) VALUES "
        "('acme', 'wmGone', 'm1', now(), 'staff'), ('acme', 'wmStays', 'm1', now(), 'staff'), "
        "('acme', 'wrGroup', 'm2', now(), 'siyu')"
    )
    with outreach.pool.connection() as conn:
        forget(conn, [{"tenant_id": "acme", "contact_id": "c_gone", "erased_at": outreach.now,
                       "identity_hashes": [identity_hash("acme", "external_userid", "wmGone")]}])  # fmt: skip
    left = outreach.sql("SELECT recipient FROM platform_sends ORDER BY recipient")
    assert [r["recipient"] for r in left] == ["wmStays", "wrGroup"]
