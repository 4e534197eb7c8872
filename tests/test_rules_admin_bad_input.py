"""Bad input to the rule commands: a clear Chinese answer and nothing stored, installed or half-applied."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from nlp.rules import PRECEDENCE_RULE_ZH
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser
from tests.test_rules_admin_support import audit_events, classify, rule_payload, rule_versions


async def assert_nothing_changed(client: TestClient) -> None:
    assert await rule_versions(client) == []
    assert await audit_events(client, "rules_changed") == []
    assert await audit_events(client, "rules_change_pending") == []
    assert runtime_of(client).rulebook.version == 0


MALFORMED = [
    ("规则 添加 机械类", "请写明分类和至少一个关键词"),
    ('规则 添加 机械类 ""', "关键词不能为空"),
    ("规则 添加 机械类 「」", "关键词不能为空"),
    ("规则 添加 不存在类 咔咔响", "没有名为「不存在类」的分类"),
    ("规则 删除 机械类 从来没有的词", "「机械类」中没有这些关键词"),
    ("规则 删除 机械类 异响 从来没有的词 抖动", "「机械类」中没有这些关键词：从来没有的词"),
    ("规则 添加 机械类 好词 🔥", "里没有文字或数字"),
    ('规则 添加 机械类 ".*"', "里没有文字或数字"),
    ("规则 添加 机械类 这是一个非常非常长的关键词超过了二十个字的限制呢", "太长了"),
    ('规则 添加 机械类 "引号没有配对', "引号没有配对"),
    ("规则 新增分类 🔥类", "不可用"),
    ("规则 新增分类 机械类", "已存在"),
    ("规则 新增分类", "请写明新分类的名称"),
    ("规则 重命名 机械类", "请写明原分类名和新分类名"),
    ("规则 重命名 机械类 电控类", "已存在"),
    ("规则 删除分类 机械类 电控类", "一次只能删除一个分类"),
    ("规则 删除分类 没有这个类", "没有名为「没有这个类」的分类"),
    ("规则 回滚", "请给出一个版本号"),
    ("规则 回滚 abc", "请给出一个版本号"),
    ("规则 回滚 -1", "请给出一个版本号"),
    ("规则 回滚 99", "没有规则版本 v99"),
    ("规则 测试", "请在「规则 测试」后面写上要测试的消息"),
    ("规则 列表 多余", "这条命令不需要参数"),
    ("规则 历史 多余", "这条命令不需要参数"),
    ("规则 乱写一气", "看不懂这条规则命令"),
    ("rules DROP TABLE config_versions", "看不懂这条规则命令"),
]


@pytest.mark.parametrize("command,answer", MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_or_invalid_commands_change_nothing(app_client: TestClient, command: str,
                                                            answer: str) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say(command)
    assert answer in await admin.last_text()
    await assert_nothing_changed(app_client)


async def test_one_bad_keyword_rejects_the_whole_change(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 添加 机械类 雨刮器 🔥")
    assert "没有文字或数字" in await admin.last_text()
    await assert_nothing_changed(app_client)
    assert classify(app_client, "雨刮器坏了").category is None


async def test_ten_thousand_characters_are_refused_before_anything_runs(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 测试 " + "发动机异响" * 2000)
    assert "消息太长了" in await admin.last_text()
    await admin.say("规则 添加 机械类 " + "响" * 10_000)
    assert "消息太长了" in await admin.last_text()
    await assert_nothing_changed(app_client)


async def test_a_long_test_message_within_the_chat_limit_is_classified(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 测试 " + "今天天气不错，" * 200 + "方向盘抖动")
    reply = await admin.last_text()
    assert "（共 " in reply and "字）" in reply  # the echo is clipped, the reply stays short
    assert len(reply) < 600


async def test_emoji_and_mixed_english_in_a_test_message(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 测试 😭😭 my car 刹车🔥异响 help")
    reply = await admin.last_text()
    assert "分类：机械类" in reply and "命中关键词：异响" in reply
    await assert_nothing_changed(app_client)


async def test_regex_and_sql_metacharacters_are_literal_keywords(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say('规则 添加 机械类 "a.*b" "x\');DROP TABLE t"')
    reply = await admin.last_text()
    assert "已向「机械类」添加 2 个关键词" in reply
    keywords = next(c for c in (await rule_payload(app_client, 1))["categories"] if c["name"] == "机械类")["keywords"]
    assert keywords[-2:] == ["a.*b", "x');DROP TABLE t"]
    assert classify(app_client, "a.*b坏了").category == "机械类"
    assert classify(app_client, "axxb坏了").category is None  # not a regex
    assert classify(app_client, "日志里有 x');DROP TABLE t").category == "机械类"
    async with runtime_of(app_client).sessions() as session:
        assert (await session.execute(text("SELECT count(*) FROM config_versions"))).scalar_one() == 1


async def test_duplicate_keyword_is_reported_and_stores_nothing(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 添加 机械类 异响 異響 ＡＢＳ泵")
    reply = await admin.last_text()
    assert "已向「机械类」添加 1 个关键词：ABS泵" in reply and "「異響」已在「机械类」中，未重复添加" not in reply
    assert "「异响」已在「机械类」中，未重复添加" in reply
    await admin.say("规则 添加 机械类 异响")
    assert "没有变化：关键词都已存在" in await admin.last_text()
    assert [v["version"] for v in await rule_versions(app_client)] == [1]


async def test_keyword_in_two_categories_is_reported_with_the_precedence_rule(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 添加 机械类 黑屏")
    reply = await admin.last_text()
    assert "注意：「黑屏」已在「电控类」（优先级 1）中" in reply and PRECEDENCE_RULE_ZH in reply
    assert "仍只计入「电控类」" in reply
    assert classify(app_client, "中控黑屏").category == "电控类"  # the precedence rule, as explained
    await admin.say("规则")
    assert "同一关键词出现在多个分类时" in await admin.last_text()


async def test_confirm_with_extra_words_is_refused_and_changes_nothing(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 删除分类 电控类")
    await admin.say("确认 一下")
    assert "只需回复「确认」" in await admin.last_text()
    assert await rule_versions(app_client) == []
    await admin.say("规则 确认")  # 确认 is not a verb of 规则
    assert "看不懂这条规则命令" in await admin.last_text()
    assert await rule_versions(app_client) == []
