"""A watched background thread (shared/watched.py): its death fails readiness and stops the
process; a stop asked for is not a death."""

from __future__ import annotations

import threading

import pytest

from shared.watched import Watched


def _raises() -> None:
    raise PermissionError("SASL authentication failed")


@pytest.mark.parametrize("target", [_raises, lambda: None])  # an error, or a return unasked
def test_a_thread_that_ends_unasked_fails_readiness_and_stops_the_process(target):
    stopped = threading.Event()
    watched = Watched("effects", target, stop=lambda: None, on_death=stopped.set).start()
    assert stopped.wait(5)
    with pytest.raises(RuntimeError, match="effects stopped"):
        watched.check()
    assert watched.died


def test_a_stop_asked_for_is_not_a_death_and_is_joined():
    asked = threading.Event()
    deaths = []
    watched = Watched("effects", lambda: asked.wait(5), stop=asked.set,
                      on_death=lambda: deaths.append(1)).start()  # fmt: skip
    watched.check()  # running: ready
    watched.stop()
    assert not watched._thread.is_alive()
    assert deaths == [] and watched.died is None
    watched.check()  # a shutdown is not a failure
