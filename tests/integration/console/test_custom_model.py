"""A tenant on a custom lifecycle model (stored through PUT /api/v1/lifecycle/<name>): its
stages show as the model titles them, not as codes, on the content list and form, the
overview and the segment builder's reference (docs/console.md "Languages")."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from services.outreach.catalogue import apply_catalogues
from services.outreach.tokens import create_token
from shared.tenants import DEMO_TENANTS_PATH
from tests.integration.api.test_segment_lifecycle import LOYALTY
from tests.integration.console.conftest import build, log_in
from tests.integration.console.test_people_pages import text

TITLED = {
    **LOYALTY,
    "stages": [
        {**LOYALTY["stages"][0], "title": "茶友"},
        {**LOYALTY["stages"][1], "title": "常客"},
        *LOYALTY["stages"][2:],
    ],
}


@pytest.fixture
def loyal(stack, schema, tmp_path):
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        DEMO_TENANTS_PATH.read_text(encoding="utf-8")
        + "\n  - id: loyal\n    name: Loyal Tea\n    mode: b2c\n"
        "    lifecycle_model: loyalty\n    timezone: Asia/Shanghai\n",
        encoding="utf-8",
    )
    console, segment_schema = build(
        stack, schema, seeded=False, users=[("loyal", "tea.admin", "admin")],
        env={"SIYU_TENANTS": str(tenants)},
    )  # fmt: skip
    with console.pool.connection() as conn:
        _, token = create_token(conn, tenant_id="loyal", role="admin", name="model-test")
    stored = console.client().put(
        "/api/v1/lifecycle/loyalty", json=TITLED, headers={"Authorization": f"Bearer {token}"}
    )
    assert stored.status_code == 201, stored.json
    catalogue = {  # as segment publishes it (siyu.catalogue.v1): outreach's names of the model
        "schema": "catalogue/1", "tenant_id": "loyal", "segments": [],
        "model": {"name": "loyalty", "builtin": False,
                  "stages": [s["name"] for s in TITLED["stages"]], "side_stages": ["dormant"],
                  "flags": {}},
        "published_at": datetime.now(UTC),
    }  # fmt: skip
    with console.pool.connection() as conn, conn.transaction():
        apply_catalogues(conn, [catalogue])
    yield console
    console.pool.close()
    console.drop(stack.dsn, segment_schema)


def test_a_custom_models_stages_show_as_it_titles_them(loyal):
    client = loyal.client()
    assert log_in(client, "tea.admin", tenant="loyal").status_code == 302
    for path in ("/content", "/content/new", "/", "/segments/new"):
        page = text(client.get(path))
        assert "茶友" in page and "常客" in page, path
        # a code alone in a cell is a code unlabelled; the builder shows <code>s beside titles
        assert not re.search(r"(?<!<code)>(follower|engaged)<", page), path
