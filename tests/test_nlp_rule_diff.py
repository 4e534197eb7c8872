"""Rule diffs (audit payloads, rollback risk) and the stored form of a pending change."""

from __future__ import annotations

import pytest

from nlp.errors import RuleDataError
from nlp.rule_changes import (
    AddCategory,
    AddKeywords,
    DeleteCategory,
    RemoveKeywords,
    RenameCategory,
    apply_change,
    change_from_dict,
    change_to_dict,
)
from nlp.rule_diff import diff_rules
from nlp.rules import default_rules


def test_diff_of_keyword_changes() -> None:
    rules = default_rules()
    added = apply_change(rules, AddKeywords("机械类", ("咔咔响", "咯噔"))).rules
    diff = diff_rules(rules, added)
    assert diff.keywords_added == {"机械类": ("咔咔响", "咯噔")} and not diff.keywords_removed
    assert not diff.high_risk and not diff.empty
    assert diff.lines() == ["「机械类」添加关键词：咔咔响、咯噔"]
    back = diff_rules(added, rules)
    assert back.keywords_removed == {"机械类": ("咔咔响", "咯噔")} and not back.high_risk  # two: below the bar
    assert diff_rules(rules, rules).empty


def test_diff_of_category_changes_and_risk() -> None:
    rules = default_rules()
    renamed = apply_change(rules, RenameCategory("机械类", "机械故障")).rules
    diff = diff_rules(rules, renamed)
    assert diff.added_categories == ("机械故障",) and diff.removed_categories == ("机械类",) and diff.high_risk
    fewer = apply_change(rules, RemoveKeywords("机械类", ("异响", "漏油", "抖动"))).rules
    assert diff_rules(rules, fewer).high_risk
    assert diff_rules(rules, fewer).to_json_dict()["keywords_removed"] == {"机械类": ["异响", "漏油", "抖动"]}


def test_diff_lines_clip_long_keyword_lists() -> None:
    rules = default_rules()
    many = tuple(f"词{i}" for i in range(30))
    diff = diff_rules(rules, apply_change(rules, AddKeywords("机械类", many)).rules)
    assert diff.lines(limit=3) == ["「机械类」添加关键词：词0、词1、词2 等 30 个"]


@pytest.mark.parametrize("change", [
    AddKeywords("机械类", ("a.*b", "'; DROP")),
    RemoveKeywords("电控类", ("黑屏",)),
    AddCategory("电梯类", "电梯故障", 5),
    AddCategory("制冷类"),
    RenameCategory("机械类", "机械故障"),
    DeleteCategory("电控类"),
])
def test_change_round_trips_through_json(change: object) -> None:
    import json

    stored = json.loads(json.dumps(change_to_dict(change)))  # type: ignore[arg-type]
    assert change_from_dict(stored) == change


@pytest.mark.parametrize("data", [{}, {"type": "drop_table"}, {"type": "delete_category"}, "x"])
def test_malformed_stored_change_is_a_rule_data_error(data: object) -> None:
    with pytest.raises(RuleDataError):
        change_from_dict(data)  # type: ignore[arg-type]
