"""Whether a member has sent their part of a group send, on the fake's clock: read by the task
endpoints (group_tasks.py) and by the budget, which counts a send when the member sends it
(budget.py ``settle``)."""

from __future__ import annotations

from sandbox.fake_wechat.mailbox import Sent
from sandbox.fake_wechat.state import FakeState


def task_state(state: FakeState, sent: Sent, userid: str) -> tuple[int, int]:
    """(status, send_time) of a member's task now: 2 once confirmed, else 0."""
    if userid in sent.cancelled:
        return 0, 0
    if userid in sent.confirmed:
        return 2, int(sent.confirmed[userid])
    delay = state.staff_confirm.get(userid, state.config.confirm_delay)
    if delay is not None and state.now() >= sent.at + delay:
        return 2, int(sent.at + delay)
    return 0, 0
