"""The simulator's WeCom adds carry channel code states (sandbox/population/actions.py): each
scene's state names its source channel the way Siyu's codes do."""

from __future__ import annotations

import pytest

from sandbox.population.actions import SCENE_CHANNELS, code_state
from shared.source_channels import channel_of


@pytest.mark.parametrize(("scene", "channel"), [*SCENE_CHANNELS.items(), ("unmapped", "other")])
def test_a_scene_state_names_its_channel(scene, channel):
    state = code_state(scene)
    assert channel_of(state) == channel
    assert len(state) <= 30 and state == code_state(scene)  # WeCom's limit; deterministic
