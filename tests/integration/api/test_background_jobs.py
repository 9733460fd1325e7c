"""Issue 14, finding 2: a lifecycle dry run is a background job (202 + a URL to poll), one per
tenant at a time, sampled for a big tenant, bounded across tenants, never stuck 'running'
when its process dies, and expired after a while."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from services.segment import dry_runs
from shared import jobs
from shared.config import JobSettings
from tests.integration.api.conftest import finished_job
from tests.integration.api.test_segment_lifecycle import B2B_STEPS, B2C, Lifecycle
from tests.kafka_helpers import wait_until


@pytest.fixture
def seeded(stack, schema, tmp_path):
    """acme (B2B, three contacts) and bloom (B2C, two) as tests/integration/api/test_segment_lifecycle.py
    seeds them, with the dry-run jobs run when polled."""
    built = Lifecycle(stack, schema, tmp_path)
    for step in B2B_STEPS:
        built.apply(step)
    built.apply(B2C)
    yield built
    built.pool.close()
    built.seg_pool.close()
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{built.seg}" CASCADE')


def _queue(lc, who: str = "operator", name: str = "aisceas"):
    return lc.call("POST", f"/lifecycle/{name}/dry-run", who, json={})


def test_one_dry_run_per_tenant_at_a_time_and_other_tenants_are_unaffected(seeded):
    lc = seeded
    first = _queue(lc)
    assert first.status_code == 202
    location = first.headers["Location"]
    assert location == f"/api/v1/lifecycle/aisceas/dry-run/{first.json['job_id']}"
    assert first.json["status"] == "queued"
    assert first.json["result"] is None
    # A second one of the same tenant, even of another model, names the one in progress.
    second = _queue(lc, "admin", "aarrr")
    assert second.status_code == 409
    assert second.json["error"]["code"] == "job_in_progress"
    assert second.json["error"]["details"] == {"job_id": first.json["job_id"], "location": location}
    # Another tenant queues its own at once, and cannot see acme's.
    bloom = _queue(lc, "bloom", "aarrr")
    assert bloom.status_code == 202
    assert lc.call("GET", location.removeprefix("/api/v1"), "bloom").status_code == 404
    # Polled until done: the result has today's shape, plus whether it was sampled.
    job = finished_job(lc, first, "operator")
    assert job["status"] == "done"
    assert job["progress"] == 1
    assert job["error"] is None
    result = job["result"]
    assert result["model"] == "aisceas"
    assert result["evaluated"] == 3
    assert (result["sampled"], result["population"], result["sample_size"]) == (False, 3, None)
    assert finished_job(lc, bloom, "bloom")["result"]["evaluated"] == 2
    # Once done, the tenant may ask again.
    assert _queue(lc).status_code == 202
    # The job is an operator's: a viewer neither queues nor reads it.
    assert lc.call("GET", location.removeprefix("/api/v1"), "viewer").status_code == 403


def test_a_big_tenant_is_sampled_the_same_way_every_time(seeded, monkeypatch):
    lc = seeded
    monkeypatch.setattr(dry_runs, "DRY_RUN_SAMPLE_ABOVE", 2)
    runs = [finished_job(lc, _queue(lc), "operator")["result"] for _ in range(2)]
    for result in runs:
        assert (result["sampled"], result["population"], result["sample_size"]) == (True, 3, 2)
        assert result["evaluated"] == 2
    assert runs[0]["moves"] == runs[1]["moves"]
    assert runs[0]["sample"] == runs[1]["sample"]


def test_a_job_whose_process_died_is_requeued_then_failed_never_running_forever(seeded):
    lc = seeded
    queued = _queue(lc)
    job_id = queued.json["job_id"]
    runner = lc.app.extensions[jobs.EXTENSION]

    def die_while_running() -> dict:
        """A process claims the job and dies: its heartbeat stops."""
        with runner.connection("segment") as conn:
            claimed = jobs.claim(conn, [dry_runs.DRY_RUN_JOB], max_running=4)
            assert claimed["job_id"] == job_id
            assert claimed["status"] == "running"
            conn.execute(
                "UPDATE jobs SET heartbeat_at = heartbeat_at - interval '1 hour' WHERE job_id = %s",
                (job_id,),
            )
        return claimed

    stale = die_while_running()
    with runner.connection("segment") as conn:
        assert [j["status"] for j in jobs.recover(conn, timedelta(seconds=60), timedelta(1))] == [
            "queued"
        ]
        # The dead runner, were it only slow, can no longer record its outcome.
        assert not jobs.finish(conn, stale, result={}, error=None, ttl=timedelta(1))
    die_while_running()
    with runner.connection("segment") as conn:
        assert [j["status"] for j in jobs.recover(conn, timedelta(seconds=60), timedelta(1))] == [
            "failed"
        ]
    polled = lc.call("GET", queued.headers["Location"].removeprefix("/api/v1"), "operator").json
    assert polled["status"] == "failed"
    assert polled["error"].startswith("interrupted")
    # A failed job frees the tenant's slot.
    assert _queue(lc).status_code == 202


def test_claims_are_bounded_across_tenants_and_results_expire(seeded):
    lc = seeded
    runner = lc.app.extensions[jobs.EXTENSION]
    acme, bloom = _queue(lc), _queue(lc, "bloom", "aarrr")
    with runner.connection("segment") as conn:
        assert jobs.claim(conn, [dry_runs.DRY_RUN_JOB], max_running=1) is not None
    with runner.connection("segment") as conn:  # one runs: the bound holds the other back
        assert jobs.claim(conn, [dry_runs.DRY_RUN_JOB], max_running=1) is None
    with runner.connection("segment") as conn:
        conn.execute("UPDATE jobs SET status = 'queued'")
    assert runner.drain() == 2  # oldest first, each tenant's own
    done = finished_job(lc, acme, "operator")
    assert done["status"] == "done"
    assert done["expires_at"] > done["finished_at"]
    with runner.connection("segment") as conn:
        conn.execute(
            "UPDATE jobs SET expires_at = now() - interval '1 second' WHERE job_id = %s",
            (acme.json["job_id"],),
        )
        assert jobs.expire(conn) == 1
    location = acme.headers["Location"].removeprefix("/api/v1")
    assert lc.call("GET", location, "operator").status_code == 404
    assert finished_job(lc, bloom, "bloom")["status"] == "done"


def test_a_running_job_heartbeats_so_it_is_not_taken_for_dead(seeded):
    lc = seeded
    started, release = threading.Event(), threading.Event()

    def wait(conn, job, progress):
        progress(0.5)
        started.set()
        assert release.wait(30)
        return {"ok": True}

    base = lc.app.extensions[jobs.EXTENSION]
    settings = JobSettings(threads=1, heartbeat=timedelta(milliseconds=20), poll_s=0.05)
    runner = jobs.Runner(lc.pool, base.schema_for, {"test.wait": jobs.JobKind("test.wait", "segment", wait)},
                         settings).start()  # fmt: skip
    try:
        with runner.connection("segment") as conn:
            job = jobs.submit(conn, tenant="acme", kind="test.wait", subject="x", params={},
                              created_by=None, ttl=timedelta(hours=1))  # fmt: skip
        runner.wake()
        assert started.wait(30)
        beats = set()

        def heartbeat_moved_on_twice():
            with runner.connection("segment") as conn:
                row = jobs.get(conn, tenant="acme", kind="test.wait", subject="x",
                               job_id=job["job_id"])  # fmt: skip
            assert row["status"] == "running"
            beats.add(row["heartbeat_at"])
            return row if len(beats) >= 3 else None

        row = wait_until(heartbeat_moved_on_twice, timeout=20, interval=0.02,
                         message="the heartbeat to move on twice while the job ran")  # fmt: skip
        assert row["progress"] == 0.5
        with runner.connection("segment") as conn:  # so it is not recovered as dead
            assert jobs.recover(conn, timedelta(seconds=5), timedelta(hours=1)) == []
    finally:
        release.set()
        runner.stop()
    with runner.connection("segment") as conn:
        row = jobs.get(conn, tenant="acme", kind="test.wait", subject="x", job_id=job["job_id"])
    assert row["status"] == "done"
    assert row["result"] == {"ok": True}
