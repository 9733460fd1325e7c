from __future__ import annotations

import pytest

from shared.companies import account_key, normalise_company

# Each group: names that must share one account key (the expected key first).
SAME = [
    (
        "苏州精工机械",
        [
            "苏州精工机械有限公司",
            "苏州精工机械 有限公司",
            "苏州精工机械(有限公司)",
            "苏州精工机械（有限公司）",
            "苏州精工机械有限责任公司",
            "苏州精工机械股份有限公司",
            "苏州精工机械公司",
            " 苏州 精工 机械 有限公司 ",
            "苏州精工机械",
        ],
    ),
    (
        "shenzhenhuaxinelectronics",
        [
            "Shenzhen Huaxin Electronics Co., Ltd.",
            "SHENZHEN HUAXIN ELECTRONICS CO LTD",
            "Shenzhen Huaxin Electronics Co.,Ltd",
            "Shenzhen Huaxin Electronics Company Limited",
            "Shenzhen Huaxin Electronics Limited",
            "ＳＨＥＮＺＨＥＮ ＨＵＡＸＩＮ ＥＬＥＣＴＲＯＮＩＣＳ ＣＯ．，ＬＴＤ．",
            "shenzhen huaxin electronics",
        ],
    ),
    ("西门子", ["西门子(中国)有限公司", "西门子（中国）有限公司", "西门子有限公司"]),
    ("siemens", ["Siemens (China) Co., Ltd.", "SIEMENS LTD", "Siemens"]),
    (
        "acme",
        ["Acme, Inc.", "ACME INC", "Acme Incorporated", "Acme Corp.", "Acme LLC", "Acme L.L.C."],
    ),
    ("bosch", ["Bosch GmbH", "BOSCH GMBH", "Bosch"]),
    # 集团 is kept: a group and its operating subsidiaries are different accounts
    ("美的集团", ["美的集团股份有限公司", "美的集团有限公司", "美的集团"]),
    ("abc科技", ["ＡＢＣ科技股份有限公司", "abc科技有限公司", "ABC 科技"]),
    ("costco", ["Costco", "COSTCO Corp"]),  # the "co" in Costco is not a legal form
]


@pytest.mark.parametrize(("key", "names"), SAME)
def test_variants_share_a_key(key: str, names: list[str]) -> None:
    for name in names:
        assert normalise_company(name) == key, name
        assert account_key(name) == key, name


DIFFERENT = [
    ("苏州精工机械有限公司", "无锡精工机械有限公司"),  # city prefixes name different companies
    ("苏州精工机械有限公司", "苏州精工机械有限公司上海分公司"),  # a branch is its own account
    ("美的集团股份有限公司", "美的电器有限公司"),
    ("美的集团有限公司", "美的有限公司"),  # the group is not its subsidiary
    ("Shenzhen Huaxin Electronics Co., Ltd.", "Dongguan Huaxin Electronics Co., Ltd."),
    ("Huaxin Electronics", "Huaxin Electric"),
    ("华为技术有限公司", "华为终端有限公司"),
    ("Costco", "Cost"),
    ("ABC科技", "ABD科技"),
]


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_companies_keep_different_keys(a: str, b: str) -> None:
    assert normalise_company(a) != normalise_company(b)


def test_chinese_is_kept_and_latin_lower_cased() -> None:
    assert normalise_company("Huaxin 华信电子 Co., Ltd.") == "huaxin华信电子"
    assert normalise_company("上海ABC信息技术有限公司") == "上海abc信息技术"


@pytest.mark.parametrize(
    "name", ["", "   ", "有限公司", "Co., Ltd.", "（）", "LLC", "股份有限公司"]
)
def test_names_without_a_name_fail(name: str) -> None:
    with pytest.raises(ValueError):
        normalise_company(name)
    with pytest.raises(ValueError):
        account_key(name)


def test_key_is_idempotent() -> None:
    for _, names in SAME:
        for name in names:
            key = normalise_company(name)
            assert normalise_company(key) == key


def test_too_long_for_an_account_key() -> None:
    name = "精" * 201 + "有限公司"
    assert len(normalise_company(name)) == 201
    with pytest.raises(ValueError):
        account_key(name)
