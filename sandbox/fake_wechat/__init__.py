"""`siyu fake-wechat` (:8099): a local stand-in for the WeChat Official Account and WeCom HTTP APIs.

It behaves like the platform (docs/platform.md): credentials from the tenants file, expiring and
rotating access tokens, frequency limits (45009), the platform's error codes, and each tenant's
WeCom customers, tags and customer groups seeded from the simulator's people, so ``siyu dev`` and
the tests run the real clients against it. Base URLs for clients:
``http://127.0.0.1:8099/wecom/cgi-bin/`` and ``http://127.0.0.1:8099/oa/cgi-bin/``.

Everything lives in memory in one process (a threaded werkzeug server: one state, no workers).
Options come from keyword arguments or ``Settings.sandbox``: ``SIYU_FAKE_WECHAT_SEED`` (1),
``SIYU_FAKE_WECHAT_CONTACTS`` (300), ``SIYU_FAKE_WECHAT_TOKEN_TTL`` (7200 s); the same defaults as
``siyu simulate`` under ``siyu dev --demo``. ``python -m sandbox.fake_wechat --help``
lists every limit.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from sandbox.fake_wechat.app import create_app
from sandbox.fake_wechat.state import FakeConfig, FakeState
from shared.config import Settings
from shared.tenants import DEMO_TENANTS_PATH, load_tenants

__all__ = ["FakeConfig", "FakeState", "build_state", "create_app", "main"]

log = logging.getLogger("siyu.fake_wechat")


def build_state(
    settings: Settings,
    *,
    seed: int | None = None,
    contacts: int | None = None,
    token_ttl: int | None = None,
    config: FakeConfig | None = None,
    clock: Callable[[], float] | None = None,
) -> FakeState:
    """The fake's state for the tenants of ``settings``; unset options from ``settings.sandbox``."""
    options = settings.sandbox
    config = config or FakeConfig()
    if token_ttl is None:  # else SIYU_FAKE_WECHAT_TOKEN_TTL, else the config's own
        token_ttl = options.fake_wechat_token_ttl
    if token_ttl is not None:
        config.token_ttl = token_ttl
    registry = load_tenants(settings.tenants_path)
    defaults = None
    if settings.tenants_path.resolve() == DEMO_TENANTS_PATH.resolve():
        from shared.tenants import DEMO_SECRETS  # the demo tenants' secrets, as `siyu dev`

        defaults = DEMO_SECRETS
    kwargs = {"clock": clock} if clock is not None else {}
    state = FakeState.from_tenants(
        registry,
        seed=seed if seed is not None else options.fake_wechat_seed,
        contacts=contacts if contacts is not None else options.fake_wechat_contacts,
        config=config,
        secret_defaults=defaults,
        **kwargs,
    )
    for creds in [*state.corps.values(), *state.apps.values()]:
        if creds.secret is None:
            who = getattr(creds, "corp_id", None) or getattr(creds, "app_id", "")
            log.warning(
                "no secret for %s (tenant %s): its token calls will fail", who, creds.tenant_id
            )
    return state


def main(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8099,
    seed: int | None = None,
    contacts: int | None = None,
    token_ttl: int | None = None,
    config: FakeConfig | None = None,
) -> int:
    from werkzeug.serving import make_server

    state = build_state(settings, seed=seed, contacts=contacts, token_ttl=token_ttl, config=config)
    # werkzeug's access log would print query strings, i.e. secrets and access tokens;
    # /_fake/calls lists the calls instead.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(host, port, create_app(state), threaded=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="fake-wechat", daemon=True)
    thread.start()
    summary = state.summary()
    log.info(
        "fake WeChat/WeCom API on http://%s:%d (wecom: /wecom/cgi-bin/, oa: /oa/cgi-bin/, "
        "seed %d, %s)",
        host,
        server.server_port,
        state.seed,
        ", ".join(f"{c['tenant']}: {c['external_contacts']} contacts" for c in summary["corps"]),
    )
    stop.wait()
    server.shutdown()
    thread.join(5)
    return 0
