"""The outreach sender table: every channel has exactly one sender."""

from services.outreach.model import CHANNEL_PAYLOAD
from services.outreach.senders import SENDERS
from shared.vocabulary import CHANNELS


def test_every_channel_has_one_sender_and_a_payload():
    assert set(SENDERS) == set(CHANNELS) == set(CHANNEL_PAYLOAD)
    assert {c for c, s in SENDERS.items() if s.platform == "wecom"} == {
        c for c in CHANNELS if c.startswith("wecom")
    }
    assert {c for c, s in SENDERS.items() if s.idempotent} == {"oa_template", "oa_mass"}
