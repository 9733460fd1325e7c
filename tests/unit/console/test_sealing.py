"""console/sealing.py: a sealed value opens with the same secret within its time, never with
another secret, never after its time, and its text does not show the value."""

from __future__ import annotations

from console.sealing import seal, unseal

SECRET = "console-test-secret-0123456789"


def test_a_sealed_value_opens_with_its_secret_only():
    sealed = seal("siyu_adm_abc", SECRET)
    assert "siyu_adm_abc" not in sealed
    assert unseal(sealed, SECRET) == "siyu_adm_abc"
    assert unseal(sealed, SECRET + "x") is None
    assert unseal("not-a-sealed-value", SECRET) is None


def test_a_sealed_value_expires():
    assert unseal(seal("siyu_adm_abc", SECRET), SECRET, ttl_s=-1) is None
