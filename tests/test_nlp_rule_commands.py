"""The admins' chat grammar: every verb, aliases, spacing, quoting and malformed commands."""

from __future__ import annotations

import pytest

from nlp.errors import RuleCommandError
from nlp.rule_changes import AddCategory, AddKeywords, DeleteCategory, RemoveKeywords, RenameCategory
from nlp.rule_commands import (
    RULE_HELP,
    Cancel,
    ChangeRules,
    Confirm,
    DryRun,
    ListRules,
    Rollback,
    ShowHelp,
    ShowHistory,
    parse_rule_command,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("规则", ListRules()),
        ("规则 列表", ListRules()),
        ("rules list", ListRules()),
        ("规则 添加 机械类 咔咔响 咯噔", ChangeRules(AddKeywords("机械类", ("咔咔响", "咯噔")))),
        ("规则　添加　机械类　咔咔响、咯噔，异音", ChangeRules(AddKeywords("机械类", ("咔咔响", "咯噔", "异音")))),
        ("  规则   add   机械类   咔咔响  ", ChangeRules(AddKeywords("机械类", ("咔咔响",)))),
        ('/rules ADD 电控类 "check engine"', ChangeRules(AddKeywords("电控类", ("check engine",)))),
        ("规则 添加 电控类 「咔 咔」", ChangeRules(AddKeywords("电控类", ("咔 咔",)))),
        ("规则 删除 机械类 咔咔响", ChangeRules(RemoveKeywords("机械类", ("咔咔响",)))),
        ("规则 新增分类 制冷类", ChangeRules(AddCategory("制冷类"))),
        ("规则 新增分类 制冷类 空调 冰箱", ChangeRules(AddCategory("制冷类", description="空调 冰箱"))),
        ("规则 重命名 制冷类 空调类", ChangeRules(RenameCategory("制冷类", "空调类"))),
        ("规则 删除分类 制冷类", ChangeRules(DeleteCategory("制冷类"))),
        ("规则 测试 没有异响，就是黑屏", DryRun("没有异响，就是黑屏")),
        ("规则 测试   方向盤抖動  ABS 灯亮", DryRun("方向盤抖動  ABS 灯亮")),
        ("规则 历史", ShowHistory()),
        ("规则 回滚 3", Rollback(3)),
        ("规则 回滚 v12", Rollback(12)),
        ("规则 帮助", ShowHelp()),
        ("确认", Confirm()),
        ("  确认 ", Confirm()),
        ("取消", Cancel()),
        ("CONFIRM", Confirm()),
    ],
)
def test_valid_commands(text: str, expected: object) -> None:
    assert parse_rule_command(text) == expected


@pytest.mark.parametrize("text", ["你好", "我的车异响", "规矩 列表", "", "rulesx list", "确认一下我的工单"])
def test_other_messages_are_not_rule_commands(text: str) -> None:
    assert parse_rule_command(text) is None


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("规则 添加 机械类", "至少一个关键词"),
        ("规则 添加", "至少一个关键词"),
        ("规则 删除 机械类", "至少一个关键词"),
        ("规则 新增分类", "新分类的名称"),
        ("规则 重命名 制冷类", "两个"),
        ("规则 重命名 a b c", "两个"),
        ("规则 删除分类 a b", "一次只能删除一个分类"),
        ("规则 删除分类", "一次只能删除一个分类"),
        ("规则 回滚", "版本号"),
        ("规则 回滚 abc", "版本号"),
        ("规则 回滚 -1", "版本号"),
        ("规则 回滚 1 2", "版本号"),
        ("规则 测试", "要测试的消息"),
        ("规则 列表 多余", "不需要参数"),
        ("规则 历史 多余", "不需要参数"),
        ("规则 飞起来", "看不懂"),
        ('规则 添加 机械类 "没配对', "引号没有配对"),
        ("规则 添加机械类 咔咔响", "看不懂"),
    ],
)
def test_malformed_commands_raise_with_usage(text: str, hint: str) -> None:
    with pytest.raises(RuleCommandError) as caught:
        parse_rule_command(text)
    assert hint in caught.value.user_message
    assert "规则" in caught.value.data["usage"]


def test_delete_category_is_not_read_as_delete_keyword() -> None:
    command = parse_rule_command("规则 删除分类 制冷类")
    assert isinstance(command, ChangeRules) and isinstance(command.change, DeleteCategory)
    assert command.needs_confirmation


def test_removing_three_keywords_needs_confirmation() -> None:
    command = parse_rule_command("规则 删除 机械类 异响 漏油 抖动")
    assert isinstance(command, ChangeRules) and command.needs_confirmation
    command = parse_rule_command("规则 删除 机械类 异响")
    assert isinstance(command, ChangeRules) and not command.needs_confirmation


def test_metacharacters_reach_the_change_verbatim() -> None:
    command = parse_rule_command('规则 添加 电控类 a.*b "\'; DROP TABLE x--" [x]')
    assert command == ChangeRules(AddKeywords("电控类", ("a.*b", "'; DROP TABLE x--", "[x]")))


def test_help_text_documents_every_verb() -> None:
    for verb in ("列表", "添加", "删除", "新增分类", "重命名", "删除分类", "测试", "历史", "回滚", "确认"):
        assert verb in RULE_HELP
