"""Issue 14, finding 2: a campaign preview is an operator's background job (202 + a URL to
poll), one per tenant at a time, and plans a deterministic sample of a big audience."""

from __future__ import annotations

from services.outreach import api_preview
from tests.integration.api.conftest import finished_job


def _campaign(outreach, n: int) -> str:
    for ext, _ in outreach.customers(n):
        outreach.profile(f"c_{ext}", ext=ext, segments=["all"])
    item = outreach.content()
    return outreach.campaign(launch=False, channel="wecom_single", audience={"segments": ["all"]},
                             content={"item": item},
                             trigger={"schedule": {"cron": "0 10 * * TUE"}})  # fmt: skip


def test_a_preview_is_an_operators_job_one_per_tenant(outreach):
    campaign = _campaign(outreach, 3)
    path = f"/campaigns/{campaign}/preview"
    assert outreach.call("POST", path, "viewer").status_code == 403
    first = outreach.call("POST", path, "operator")
    assert first.status_code == 202
    location = first.headers["Location"]
    assert location == f"/api/v1{path}/{first.json['job_id']}"
    again = outreach.call("POST", path, "operator")
    if again.status_code == 409:  # unless the app's job threads finished it meanwhile
        assert again.json["error"]["code"] == "job_in_progress"
        assert again.json["error"]["details"]["job_id"] == first.json["job_id"]
    else:
        assert again.status_code == 202
        finished_job(outreach.api, again, "operator")
    # Another tenant neither sees acme's job nor its campaign.
    assert outreach.call("GET", location.removeprefix("/api/v1"), "bloom").status_code == 404
    assert outreach.call("GET", location.removeprefix("/api/v1"), "viewer").status_code == 403
    job = finished_job(outreach.api, first, "operator")
    assert job["status"] == "done"
    result = job["result"]
    assert (result["recipients"], result["to_send"]) == (3, 3)
    assert (result["sampled"], result["population"], result["sample_size"]) == (False, 3, None)


def test_a_big_audience_is_sampled_the_same_way_every_time(outreach, monkeypatch):
    campaign = _campaign(outreach, 5)
    monkeypatch.setattr(api_preview, "PREVIEW_SAMPLE_ABOVE", 3)
    results = [outreach.preview(campaign) for _ in range(2)]
    for result in results:
        assert (result["sampled"], result["population"], result["sample_size"]) == (True, 5, 3)
        assert result["recipients"] == 3
        assert result["per_channel"] == {"wecom": 5, "oa": 0}  # counted over the whole audience
    ids = [sorted(s["recipient_id"] for s in r["samples"]) for r in results]
    assert ids[0] == ids[1]
    assert len(ids[0]) == 3
