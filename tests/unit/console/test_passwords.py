"""Console password hashes (console/passwords.py): scrypt in a self-describing format."""

from __future__ import annotations

import hashlib

import pytest

from console.passwords import (
    MIN_LENGTH,
    WeakPassword,
    check_password,
    hash_password,
    verify_password,
)


def test_a_hash_names_its_parameters_and_verifies_its_password_only():
    stored = hash_password("correct horse battery")
    scheme, n, r, p, _salt, _key = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("", stored)


def test_each_hash_has_its_own_salt():
    assert hash_password("same password here") != hash_password("same password here")


def test_the_stored_parameters_are_the_ones_verified_with():
    """A hash made with other (older, weaker) parameters still verifies."""
    import base64

    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"older password", salt=salt, n=2**10, r=8, p=1, dklen=32)
    stored = f"scrypt$1024$8$1${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"
    assert verify_password("older password", stored)
    assert not verify_password("other password", stored)


@pytest.mark.parametrize(
    "stored",
    ["", "plain", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$!!"],
)
def test_a_malformed_hash_verifies_nothing_and_raises_nothing(stored):
    assert not verify_password("anything at all", stored)


def test_no_user_is_false_after_the_same_work():
    assert not verify_password("anything at all", None)


@pytest.mark.parametrize(
    ("password", "ok"),
    [("x" * (MIN_LENGTH - 1), False), ("x" * MIN_LENGTH, True), ("密" * MIN_LENGTH, True),
     ("x" * 2000, False)],
)  # fmt: skip
def test_password_rules(password, ok):
    if ok:
        check_password(password)
    else:
        with pytest.raises(WeakPassword):
            check_password(password)
