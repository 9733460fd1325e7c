"""The console's catalogues (console/catalogue.py): the committed .mo is the .po compiled, and
every string the code and templates translate has a Chinese translation."""

from __future__ import annotations

import pytest

from console.catalogue import catalogues, compiled, untranslated


def test_there_is_a_chinese_catalogue():
    assert [po.parts[-3] for po in catalogues()] == ["zh_Hans_CN"]


@pytest.mark.parametrize("po", catalogues(), ids=lambda p: p.parts[-3])
def test_the_committed_mo_is_the_po_compiled(po):
    assert po.with_suffix(".mo").read_bytes() == compiled(po), (
        f"{po.with_suffix('.mo')} is stale: run `python -m console.catalogue`"
    )


@pytest.mark.parametrize("po", catalogues(), ids=lambda p: p.parts[-3])
def test_every_translated_string_has_a_translation(po):
    assert untranslated(po) == [], "run `python -m console.catalogue`, then translate these"
