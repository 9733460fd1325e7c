"""What an API handler gets for one call: the fake's state, the caller's token and the JSON body.

Its own module so that the dispatcher (app.py) and the handlers in other modules (sending.py)
share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.fake_wechat.seed import CorpWorld
from sandbox.fake_wechat.state import FakeState, Token


@dataclass
class ApiCall:
    state: FakeState
    token: Token | None  # None on the token endpoints, which need none
    body: dict[str, Any]  # the JSON body of a POST, {} for a GET

    @property
    def world(self) -> CorpWorld:
        """The corp world of the caller's token (only for routes that require one)."""
        assert self.token is not None
        return self.state.worlds[self.token.owner]
