"""The console's error page (docs/console.md "Languages"): its own messages are already in the
reader's language and shown as they are, never marked untranslated; a service's English goes
through the message table, its words in the tooltip; an HTTP error is never werkzeug's English
name (a 413 for a body over the app's limit)."""

from __future__ import annotations

import pytest

from shared.api.app import MAX_BODY_BYTES
from shared.api.errors import ApiError
from tests.integration.console.conftest import csrf, log_in


def logged_in(console):
    client = console.client()
    log_in(client, "li.lei")
    return client


def test_a_body_over_the_limit_is_a_413_page_in_the_readers_words(console):
    client = logged_in(console)
    token = csrf(client, "/content/new")
    response = client.post("/content/new", data={"csrf_token": token,
                                                 "wecom_text": "x" * (MAX_BODY_BYTES + 1)})  # fmt: skip
    body = response.get_data(as_text=True)
    assert response.status_code == 413 and response.mimetype == "text/html"
    assert f"提交的内容过大：最多 {MAX_BODY_BYTES // 1024} KiB。" in body
    assert "Request Entity Too Large" not in body and "untranslated" not in body


@pytest.mark.parametrize(
    ("path", "shown"), [("/nope", "页面不存在。"), ("/segments/nope", "页面不存在。")]
)
def test_the_consoles_own_messages_are_not_marked_untranslated(console, path, shown):
    body = logged_in(console).get(path).get_data(as_text=True)
    assert f'<p class="error">{shown}</p>' in body
    assert "untranslated" not in body


def test_a_services_message_is_translated_with_its_words_in_the_tooltip(console, monkeypatch):
    from console import views

    def refused(*args, **kwargs):
        raise ApiError(409, "conflict", "a campaign that is archived cannot be launched")

    monkeypatch.setattr(views.pages, "overview", refused)
    response = logged_in(console).get("/")
    body = response.get_data(as_text=True)
    assert response.status_code == 409
    assert 'title="a campaign that is archived cannot be launched">状态为「' in body
    assert "untranslated" not in body
