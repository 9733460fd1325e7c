"""Tests' handle on the fake WeCom API (sandbox.fake_wechat): the fake's own app and
state on a free port, plus what the client tests need around it (the fake is the remote API):
contacts and chats of our choosing, injected errcodes, slow answers, and a log of the calls with
their parameters (secret and token removed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.serving import make_server

from sandbox.fake_wechat import FakeConfig, FakeState, create_app
from sandbox.fake_wechat.seed import Contact, GroupChat
from sandbox.fake_wechat.state import Injection
from shared.tenants import TenantRegistry

PREFIX = "/wecom/cgi-bin/"
OA_PREFIX = "/oa/cgi-bin/"  # delays and the call log cover the OA API too
ERRMSG = {-1: "system busy", 45009: "api freq out of limit", 40001: "invalid credential",
          40014: "invalid access_token", 42001: "access_token expired"}  # fmt: skip


class FakeWeCom:
    def __init__(self, tenants: TenantRegistry, secrets: dict[str, str], *, contacts: int = 3):
        """``secrets``: the value of each tenant's secret environment variable, by its name."""
        self.state = FakeState.from_tenants(
            tenants, contacts=contacts, config=FakeConfig(), secret_defaults=secrets
        )
        self.delays: dict[str, float] = {}  # path -> seconds to wait before answering
        self.calls: list[tuple[str, dict[str, str]]] = []  # (path, params without secrets)
        self._lock = threading.Lock()
        self._server = None

    # --- test controls -------------------------------------------------------------------------

    def world(self, corp_id: str):
        return self.state.worlds[corp_id]

    def add_contact(
        self, corp_id: str, external_userid: str, follow_user: list[dict], **contact: Any
    ) -> None:
        detail = {"external_userid": external_userid, **contact}
        self.world(corp_id).contacts[external_userid] = Contact(detail, follow_user, None)

    def add_chat(self, corp_id: str, chat_id: str, detail: dict[str, Any]) -> None:
        self.world(corp_id).chats[chat_id] = GroupChat(chat_id, detail, {})

    def fail(self, path: str, *errcodes: int) -> None:
        """Answer the next calls of ``path`` with these errcodes, in order."""
        for errcode in errcodes:
            self.state.inject(Injection(errcode, ERRMSG.get(errcode, "injected"), 1, "wecom", path))

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.injections.clear()

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.calls if p == path)

    def gettoken_calls(self) -> int:
        return self.count("gettoken")

    def tokens(self) -> list[str]:
        return list(self.state.tokens)

    def contact_paths(self) -> Iterable[dict[str, str]]:
        return [p for path, p in self.calls if path == "externalcontact/get"]

    # --- the server ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{PREFIX}"

    @property
    def oa_base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{OA_PREFIX}"

    def start(self) -> FakeWeCom:
        app = create_app(self.state)
        inner = app.wsgi_app

        def observed(environ, start_response):
            path = environ.get("PATH_INFO", "")
            prefix = next((p for p in (PREFIX, OA_PREFIX) if path.startswith(p)), None)
            if prefix is not None:
                path = path[len(prefix) :]
                params = {
                    k: v
                    for k, v in parse_qsl(environ.get("QUERY_STRING", ""))
                    if k not in ("access_token", "corpsecret")
                }
                with self._lock:
                    self.calls.append((path, params))
                if self.delays.get(path):
                    time.sleep(self.delays[path])  # a slow endpoint: lets time pass, on purpose
            return inner(environ, start_response)

        app.wsgi_app = observed
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeWeCom:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
