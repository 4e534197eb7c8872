"""Rule model: immutability, JSON round trip, shipped defaults, malformed data."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nlp.errors import NlpError, RuleDataError
from nlp.rules import CategoryRule, RuleSet, default_rules


def test_default_rules_have_the_contract_categories() -> None:
    rules = default_rules()
    names = [c.name for c in rules.categories]
    assert "机械类" in names and "电控类" in names
    mechanical, electrical = rules.category("机械类"), rules.category("电控类")
    assert {"异响", "漏油", "抖动"} <= set(mechanical.keywords)
    assert {"黑屏", "无法启动"} <= set(electrical.keywords)


def test_default_rules_have_no_keyword_in_two_categories() -> None:
    seen: dict[str, str] = {}
    for category in default_rules():
        for keyword in category.keywords:
            assert keyword not in seen, f"{keyword} in {seen.get(keyword)} and {category.name}"
            seen[keyword] = category.name


def test_json_round_trip() -> None:
    rules = default_rules()
    assert RuleSet.from_json(rules.to_json()) == rules
    assert RuleSet.from_dict(json.loads(json.dumps(rules.to_dict()))) == rules


def test_rules_are_immutable() -> None:
    rules = default_rules()
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.version = 9  # type: ignore[misc]
    assert isinstance(rules.categories, tuple) and isinstance(rules.categories[0].keywords, tuple)


def test_lookup_and_owners_use_normalised_names() -> None:
    rules = RuleSet(3, (CategoryRule("甲", ("OBD",), precedence=2), CategoryRule("乙", ("obd",), precedence=1)))
    assert rules.category("甲") is rules.categories[0]
    assert rules.category("丙") is None
    assert [c.name for c in rules.keyword_owners("ＯＢＤ")] == ["乙", "甲"]


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"categories": []},
        {"version": -1, "categories": []},
        {"version": "1", "categories": []},
        {"version": 1, "categories": {}},
        {"version": 1, "categories": [{"keywords": []}]},
        {"version": 1, "categories": [{"name": "", "keywords": []}]},
        {"version": 1, "categories": [{"name": "甲", "keywords": "异响"}]},
        {"version": 1, "categories": [{"name": "甲", "keywords": [1]}]},
        {"version": 1, "categories": [{"name": "甲", "precedence": "高"}]},
        {"version": 1, "categories": [{"name": "甲"}, {"name": "甲"}]},
    ],
)
def test_malformed_rule_data_raises_with_a_chinese_message(data: object) -> None:
    with pytest.raises(RuleDataError) as caught:
        RuleSet.from_dict(data)  # type: ignore[arg-type]
    assert isinstance(caught.value, NlpError)
    assert "规则数据" in caught.value.user_message


def test_invalid_json_text() -> None:
    with pytest.raises(RuleDataError):
        RuleSet.from_json("{not json")
