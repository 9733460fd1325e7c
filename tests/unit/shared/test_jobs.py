"""Issue 14 review: the admin API's job runner takes the services in turn, so a steady stream of
lifecycle dry runs (segment) cannot starve campaign previews (outreach)."""

from __future__ import annotations

from contextlib import contextmanager

from shared import jobs


def _runner(monkeypatch, queued: dict[str, list[str]]) -> tuple[jobs.Runner, list[str]]:
    def run(conn, job, progress):
        return {}

    kinds = {
        "lifecycle.dry_run": jobs.JobKind("lifecycle.dry_run", "segment", run),
        "campaign.preview": jobs.JobKind("campaign.preview", "outreach", run),
    }
    runner = jobs.Runner(None, lambda service: service, kinds)
    ran: list[str] = []

    @contextmanager
    def connection(service):
        yield service

    def claim(conn, names, max_running):  # conn is the service name here
        return {"job_id": queued[conn].pop(0)} if queued[conn] else None

    monkeypatch.setattr(runner, "_housekeeping", lambda: None)
    monkeypatch.setattr(runner, "connection", connection)
    monkeypatch.setattr(runner, "_execute", lambda service, job: ran.append(job["job_id"]))
    monkeypatch.setattr(jobs, "claim", claim)
    return runner, ran


def test_a_stream_of_one_services_jobs_does_not_starve_the_others(monkeypatch):
    dry_runs = [f"dry{i}" for i in range(100)]  # always more queued than the runner gets to
    runner, ran = _runner(monkeypatch, {"segment": dry_runs, "outreach": ["preview"]})
    for _ in range(2):
        assert runner.run_one()
    assert "preview" in ran
    # With nothing of outreach queued, every round still runs a segment job.
    for _ in range(3):
        assert runner.run_one()
    assert ran[2:] == ["dry1", "dry2", "dry3"]


def test_the_turns_alternate_while_both_have_jobs(monkeypatch):
    runner, ran = _runner(
        monkeypatch, {"segment": ["s1", "s2", "s3"], "outreach": ["o1", "o2", "o3"]}
    )
    while runner.run_one():
        pass
    assert ran == ["s1", "o1", "s2", "o2", "s3", "o3"]
    assert runner.drain() == 0
