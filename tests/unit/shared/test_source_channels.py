"""The state of a channel code names its source channel (shared/source_channels.py)."""

import pytest

from shared.source_channels import MAX_STATE, SOURCE_CHANNELS, channel_of, new_state


@pytest.mark.parametrize("channel", SOURCE_CHANNELS)
def test_a_new_state_names_its_channel_within_wecoms_limit(channel):
    state = new_state(channel)
    assert len(state) <= MAX_STATE
    assert channel_of(state) == channel


def test_states_are_not_reused():
    assert len({new_state("expo") for _ in range(200)}) == 200


@pytest.mark.parametrize(
    "state",
    [None, "", 42, "expo", "expo.", "expo.ABCDEF1234", "nochannel.abcdef1234", "expo.abc", "expo.abcdef12345",
     "expo.abcdef1234.x", " expo.abcdef1234"],
)  # fmt: skip
def test_a_state_siyu_did_not_issue_names_no_channel(state):
    assert channel_of(state) is None


def test_an_unknown_channel_is_refused():
    with pytest.raises(ValueError):
        new_state("tv")
