"""Neutral Card -> DingTalk rendering and the command text that carries button presses."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import unquote

from adapters.dingtalk.cards import buttons_for, robot_card_message, template_params, text_message, text_reply_prompt
from adapters.dingtalk.commands import command_text, parse_command
from core.cards import ActionStyle, Card, CardAction, CardField, CardKind, FieldKind, FieldOption


def _command_of(url: str):
    return parse_command(unquote(url.split("content=", 1)[1]))


def test_command_round_trip_survives_delimiters_in_ids_and_values():
    text = command_text("确认", "card|〔1〕 x", "act/1", {"note": "a|b〕c d", "rating": "5"})
    command = parse_command("前缀 " + text)
    assert command is not None
    assert (command.card_id, command.action) == ("card|〔1〕 x", "act/1")
    assert command.values == {"note": "a|b〕c d", "rating": "5"}
    assert parse_command("普通消息，没有命令") is None


def test_single_action_uses_sample_action_card():
    card = Card(id="c1", kind=CardKind.REMINDER, title="请尽快到场", actions=(CardAction("ack", "知道了"),))
    message = robot_card_message(card)
    assert message.msg_key == "sampleActionCard"
    assert message.msg_param["singleTitle"] == "知道了"
    command = _command_of(message.msg_param["singleURL"])
    assert command is not None and (command.card_id, command.action) == ("c1", "ack")


def test_escalation_offers_confirm_and_reassign():
    card = Card(
        id="e1",
        kind=CardKind.ESCALATION,
        title="工单超时升级",
        actions=(CardAction("confirm", "确认"), CardAction("reassign", "转派")),
    )
    message = robot_card_message(card)
    assert message.msg_key == "sampleActionCard2"
    assert [message.msg_param["actionTitle1"], message.msg_param["actionTitle2"]] == ["确认", "转派"]


def test_status_card_without_actions_is_markdown():
    card = Card(id="s1", kind=CardKind.STATUS, title="工单状态", facts=(("状态", "维修中"),))
    message = robot_card_message(card)
    assert message.msg_key == "sampleMarkdown"
    assert "**状态**：维修中" in message.msg_param["text"]


def test_more_choices_than_an_action_card_holds_become_markdown_links():
    options = tuple(FieldOption(str(i), f"选项{i}") for i in range(7))
    card = Card(
        id="m1",
        kind=CardKind.INFO,
        title="请选择",
        fields=(CardField("pick", "选择", FieldKind.SELECT, options),),
        actions=(CardAction("go", "提交"),),
    )
    message = robot_card_message(card)
    assert message.msg_key == "sampleMarkdown"
    assert message.msg_param["text"].count("dtmd://dingtalkclient/sendMessage") == 7


def test_text_field_is_asked_for_with_a_copyable_command_and_urgent_text_is_styled():
    card = Card(
        id="t1",
        kind=CardKind.TASK,
        title="请填写原因",
        fields=(CardField("why", "原因", FieldKind.TEXT),),
        actions=(CardAction("submit", "提交"),),
    )
    assert "请按下一条消息的提示回复" in robot_card_message(card).msg_param["text"]
    prompt = text_reply_prompt(card)
    assert prompt is not None and prompt.msg_key == "sampleText"
    # The user copies the whole message and writes the reason at its end.
    command = parse_command(prompt.msg_param["content"] + "夜班没有安排接单人")
    assert command is not None
    assert (command.card_id, command.action, command.values) == ("t1", "submit", {"why": "夜班没有安排接单人"})
    assert text_reply_prompt(replace(card, closed_note="已提交")) is None
    assert text_message("停机").msg_key == "sampleText"
    urgent = text_message("停机", urgent=True)
    assert urgent.msg_key == "sampleMarkdown" and "紧急" in urgent.msg_param["text"]


def test_signoff_rating_goes_with_the_main_action_and_the_other_action_is_plain():
    ratings = tuple(FieldOption(str(i), f"{i}分") for i in range(5, 0, -1))
    card = Card(
        id="s1",
        kind=CardKind.SIGNOFF,
        title="请确认维修完成",
        fields=(
            CardField("cause_told", "已告知故障原因", FieldKind.CHECKBOX, required=True),
            CardField("parts_confirmed", "配件更换已确认", FieldKind.CHECKBOX, required=True),
            CardField("rating", "满意度评分", FieldKind.SELECT, ratings, required=True),
        ),
        actions=(
            CardAction("sign", "确认签字", ActionStyle.PRIMARY),
            CardAction("not_fixed", "仍未修好", ActionStyle.DANGER),
        ),
    )
    buttons = buttons_for(card)
    assert [b.label for b in buttons] == [*(f"{i}分 · 确认签字" for i in range(5, 0, -1)), "⚠ 仍未修好"]
    first, last = _command_of(buttons[0].url), _command_of(buttons[-1].url)
    assert first is not None and first.values == {"cause_told": "true", "parts_confirmed": "true", "rating": "5"}
    assert last is not None and (last.action, last.values) == ("not_fixed", {})
    assert robot_card_message(card).msg_key == "sampleMarkdown"  # six buttons: links in markdown


def test_escalation_optional_technician_goes_with_reassign():
    technicians = (FieldOption("tech-wang", "王师傅"), FieldOption("tech-zhang", "张师傅"))
    card = Card(
        id="e2",
        kind=CardKind.ESCALATION,
        title="SLA 超时升级",
        fields=(CardField("technician", "转派给", FieldKind.SELECT, technicians),),
        actions=(CardAction("ack", "确认", ActionStyle.PRIMARY), CardAction("reassign", "转派")),
    )
    message = robot_card_message(card)
    assert message.msg_key == "sampleActionCard3"
    labels = [message.msg_param[f"actionTitle{i}"] for i in (1, 2, 3)]
    assert labels == ["确认", "王师傅 · 转派", "张师傅 · 转派"]
    command = _command_of(message.msg_param["actionURL3"])
    assert command is not None and (command.action, command.values) == ("reassign", {"technician": "tech-zhang"})


def test_template_params_are_all_strings_and_closed_note_drops_buttons():
    card = Card(
        id="o1", kind=CardKind.OFFER, title="新工单", actions=(CardAction("accept", "接单"),), closed_note="已被接单"
    )
    params = template_params(card)
    assert all(isinstance(v, str) for v in params.values())
    assert params["closed"] == "true" and params["actions"] == "[]"
    assert robot_card_message(card).msg_key == "sampleMarkdown"


def test_optional_text_goes_with_the_other_action():
    card = Card(
        id="qc-1",
        kind=CardKind.TASK,
        title="待质检",
        fields=(CardField("reason", "不通过原因", FieldKind.TEXT),),
        actions=(CardAction("pass", "质检通过", ActionStyle.PRIMARY), CardAction("fail", "质检不通过")),
    )
    prompt = text_reply_prompt(card)
    assert prompt is not None and "质检不通过" in prompt.msg_param["content"]
    command = parse_command(prompt.msg_param["content"] + "漏装密封垫")
    assert command is not None and (command.action, command.values) == ("fail", {"reason": "漏装密封垫"})
