"""Admin rule changes: new rule set + Chinese summary, or a clear error and nothing changed."""

from __future__ import annotations

import pytest

from nlp.errors import NlpError, RuleChangeError
from nlp.rule_changes import (
    MAX_KEYWORD_LENGTH,
    AddCategory,
    AddKeywords,
    DeleteCategory,
    RemoveKeywords,
    RenameCategory,
    apply_change,
    describe_change,
    is_high_risk,
)
from nlp.rules import CategoryRule, RuleSet, default_rules


@pytest.fixture
def rules() -> RuleSet:
    return default_rules()


def test_add_keywords(rules: RuleSet) -> None:
    result = apply_change(rules, AddKeywords("机械类", ("咔咔响", "咯噔")))
    assert result.changed
    assert result.rules.version == rules.version + 1
    assert result.rules.category("机械类").keywords[-2:] == ("咔咔响", "咯噔")
    assert "咔咔响、咯噔" in result.summary and "机械类" in result.summary
    assert rules.category("机械类").keywords == default_rules().category("机械类").keywords  # old set untouched


def test_add_normalises_traditional_and_full_width(rules: RuleSet) -> None:
    result = apply_change(rules, AddKeywords("机械类", ("咯噔響", "ＡＢＣ")))
    assert result.rules.category("机械类").keywords[-2:] == ("咯噔响", "ABC")


def test_duplicate_keyword_is_reported_and_is_a_no_op(rules: RuleSet) -> None:
    result = apply_change(rules, AddKeywords("机械类", ("异响",)))
    assert not result.changed
    assert result.rules is rules
    assert any("已在「机械类」中" in n for n in result.notices)


def test_duplicates_inside_one_command_are_added_once(rules: RuleSet) -> None:
    result = apply_change(rules, AddKeywords("机械类", ("咯噔", "咯噔", "異響")))
    keywords = result.rules.category("机械类").keywords
    assert keywords.count("咯噔") == 1 and keywords.count("异响") == 1


def test_keyword_in_another_category_is_reported_with_the_precedence_rule(rules: RuleSet) -> None:
    result = apply_change(rules, AddKeywords("机械类", ("黑屏",)))
    assert result.changed
    notice = next(n for n in result.notices if "黑屏" in n)
    assert "电控类" in notice and "优先级" in notice and "仍只计入「电控类」" in notice


def test_keyword_moved_to_higher_precedence_category_says_it_now_counts_there(rules: RuleSet) -> None:
    result = apply_change(rules, AddKeywords("电控类", ("异响",)))
    notice = next(n for n in result.notices if "异响" in n)
    assert "将计入「电控类」" in notice


@pytest.mark.parametrize(
    ("keywords", "code"),
    [
        ((), "empty_keyword"),
        (("",), "empty_keyword"),
        (("　 ",), "empty_keyword"),
        (("x" * (MAX_KEYWORD_LENGTH + 1),), "keyword_too_long"),
        (("!!!",), "keyword_no_text"),
        (("😀",), "keyword_no_text"),
        (("好词", ""), "empty_keyword"),
    ],
)
def test_invalid_keywords_reject_the_whole_change(rules: RuleSet, keywords: tuple[str, ...], code: str) -> None:
    with pytest.raises(RuleChangeError) as caught:
        apply_change(rules, AddKeywords("机械类", keywords))
    assert caught.value.data["code"] == code
    assert isinstance(caught.value, NlpError) and caught.value.user_message


def test_metacharacters_are_stored_literally(rules: RuleSet) -> None:
    literal = ("a.*b", "'; DROP TABLE x--", "[x]", "%_1")
    result = apply_change(rules, AddKeywords("电控类", literal))
    assert result.rules.category("电控类").keywords[-4:] == literal


def test_unknown_category(rules: RuleSet) -> None:
    with pytest.raises(RuleChangeError) as caught:
        apply_change(rules, AddKeywords("制冷类", ("漏氟",)))
    assert caught.value.data["code"] == "unknown_category"
    assert "机械类" in caught.value.user_message  # lists the known categories


def test_remove_keywords(rules: RuleSet) -> None:
    result = apply_change(rules, RemoveKeywords("机械类", ("异响", "漏油")))
    assert "异响" not in result.rules.category("机械类").keywords
    assert "漏油" not in result.rules.category("机械类").keywords
    assert "删除 2 个关键词" in result.summary


def test_removing_a_missing_keyword_changes_nothing(rules: RuleSet) -> None:
    with pytest.raises(RuleChangeError) as caught:
        apply_change(rules, RemoveKeywords("机械类", ("异响", "异向")))
    assert caught.value.data == {"code": "unknown_keyword", "category": "机械类", "keywords": ["异向"]}


def test_add_rename_delete_category(rules: RuleSet) -> None:
    added = apply_change(rules, AddCategory("制冷类", "空调制冷问题"))
    new = added.rules.category("制冷类")
    assert new is not None and new.keywords == () and new.precedence > max(c.precedence for c in rules)
    renamed = apply_change(added.rules, RenameCategory("制冷类", "空调类"))
    assert renamed.rules.category("制冷类") is None and renamed.rules.category("空调类") is not None
    deleted = apply_change(renamed.rules, DeleteCategory("空调类"))
    assert [c.name for c in deleted.rules] == [c.name for c in rules]
    assert deleted.rules.version == rules.version + 3


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (AddCategory("机械类"), "category_exists"),
        (AddCategory(""), "bad_category_name"),
        (AddCategory("制冷 类"), "bad_category_name"),
        (AddCategory("a.*"), "bad_category_name"),
        (AddCategory("类" * 17), "bad_category_name"),
        (RenameCategory("机械类", "电控类"), "category_exists"),
        (RenameCategory("不存在", "新类"), "unknown_category"),
        (DeleteCategory("不存在"), "unknown_category"),
    ],
)
def test_invalid_category_changes(rules: RuleSet, change: object, code: str) -> None:
    with pytest.raises(RuleChangeError) as caught:
        apply_change(rules, change)  # type: ignore[arg-type]
    assert caught.value.data["code"] == code


def test_rename_to_same_name_is_a_no_op(rules: RuleSet) -> None:
    assert not apply_change(rules, RenameCategory("机械类", "机械类")).changed


def test_cannot_delete_the_last_category() -> None:
    single = RuleSet(1, (CategoryRule("机械类", ("异响",)),))
    with pytest.raises(RuleChangeError) as caught:
        apply_change(single, DeleteCategory("机械类"))
    assert caught.value.data["code"] == "last_category"


def test_high_risk_changes() -> None:
    assert is_high_risk(DeleteCategory("机械类"))
    assert is_high_risk(RemoveKeywords("机械类", ("异响", "漏油", "抖动")))
    assert not is_high_risk(RemoveKeywords("机械类", ("异响", "漏油")))
    assert not is_high_risk(RemoveKeywords("机械类", ("异响", "异响", "異響")))  # one keyword, three spellings
    assert not is_high_risk(AddKeywords("机械类", ("a", "b", "c", "d")))
    assert not is_high_risk(RenameCategory("机械类", "机械"))


def test_describe_change_is_chinese() -> None:
    assert describe_change(DeleteCategory("制冷类")) == "删除分类「制冷类」及其全部关键词"
    assert "3 个关键词" in describe_change(RemoveKeywords("机械类", ("a", "b", "c")))
