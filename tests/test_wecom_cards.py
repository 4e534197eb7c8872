"""Pure translation rules: card id <-> task_id, truncation, neutral card -> template_card."""

from __future__ import annotations

import re

import pytest

from adapters.wecom.cards import closed_button_update, render_card
from adapters.wecom.limits import cut_utf8
from adapters.wecom.task_id import TaskIdTooLong, decode_task_id, encode_task_id
from core.cards import Card, CardAction, CardField, CardKind, FieldKind, FieldOption

TASK_ID_CHARS = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")


@pytest.mark.parametrize(
    "card_id",
    ["offer-1", "T-20250101-0001:offer:3", "a_b@c/d e", "签收-工单1", "0", "x" * 60, "_41"],
)
def test_task_id_roundtrip_uses_allowed_characters(card_id: str) -> None:
    task_id = encode_task_id(card_id, 123456)
    assert TASK_ID_CHARS.match(task_id)
    assert decode_task_id(task_id) == card_id


def test_same_card_new_delivery_gets_a_new_task_id() -> None:
    assert encode_task_id("c1", 1) != encode_task_id("c1", 2)


def test_too_long_card_id_is_refused() -> None:
    with pytest.raises(TaskIdTooLong):
        encode_task_id("卡" * 40, 1)  # 40 × 9 escaped bytes > 128


@pytest.mark.parametrize("foreign", ["", "no-salt", "bad_zz@1", "@1", "trunc_4@1"])
def test_foreign_task_ids_do_not_decode(foreign: str) -> None:
    assert decode_task_id(foreign) is None


def test_cut_utf8_never_splits_a_character() -> None:
    text = "报" * 1000
    for limit in range(3, 40):
        out = cut_utf8(text, limit)
        assert len(out.encode()) <= limit
        assert out.endswith("…")
    assert cut_utf8("短", 2048) == "短"


def test_select_options_are_capped_at_ten_and_text_fields_skipped() -> None:
    card = Card(
        id="f",
        kind=CardKind.TASK,
        title="表单",
        fields=(
            CardField("note", "备注", FieldKind.TEXT),
            CardField("level", "等级", FieldKind.SELECT, tuple(FieldOption(str(i), f"等级{i}") for i in range(20))),
        ),
        actions=(CardAction("ok", "提交"),),
    )
    out = render_card(card, "f@1", card_url="https://x.test/")
    assert out["card_type"] == "multiple_interaction"
    (select,) = out["select_list"]
    assert len(select["option_list"]) == 10
    assert select["option_list"][0]["text"] == "请选择"


def test_more_than_six_facts_fold_into_the_text() -> None:
    facts = tuple((f"项{i}", f"值{i}") for i in range(8))
    out = render_card(Card(id="s", kind=CardKind.STATUS, title="状态", facts=facts), "s@1", card_url="https://x.test/")
    assert len(out["horizontal_content_list"]) == 6
    assert "项6：值6" in out["sub_title_text"] and "项7：值7" in out["sub_title_text"]


def test_closed_card_replaces_buttons_with_the_note() -> None:
    card = Card(
        id="o",
        kind=CardKind.OFFER,
        title="新工单",
        actions=(CardAction("accept", "接单"), CardAction("decline", "拒单")),
        closed_note="已由 张三 接单（10:32）",
    )
    assert closed_button_update(card) == {"button": {"replace_name": "已由 张三 接单（10:32）"}}
    fresh = render_card(card, "o@2", card_url="https://x.test/")
    assert fresh["card_type"] == "text_notice"
    assert "button_list" not in fresh
    # The emphasis block holds 14 characters; a longer note is given in full underneath.
    assert fresh["emphasis_content"]["title"] == "已由 张三 接单（10:3…"
    assert fresh["sub_title_text"].startswith("已由 张三 接单（10:32）")


DECLINE_REASONS = (FieldOption("too_far", "距离太远"), FieldOption("too_busy", "手头工单已满"))


def test_offer_with_a_reason_select_keeps_both_buttons() -> None:
    card = Card(
        id="offer-9",
        kind=CardKind.OFFER,
        title="新派单：GD-20261123-0001",
        actions=(CardAction("accept", "接单"), CardAction("decline", "拒单")),
        fields=(CardField("reason", "拒单原因", FieldKind.SELECT, options=DECLINE_REASONS),),
    )
    out = render_card(card, "offer-9@1", card_url="https://x.test/")
    assert out["card_type"] == "button_interaction"
    assert [b["key"] for b in out["button_list"]] == ["accept", "decline"]
    selection = out["button_selection"]
    assert selection["question_key"] == "reason" and selection["selected_id"] == "ticketbot-unset"
    assert [o["id"] for o in selection["option_list"]] == ["ticketbot-unset", "too_far", "too_busy"]


def test_signoff_form_names_the_action_that_does_not_fit_as_a_reply() -> None:
    card = Card(
        id="signoff-1",
        kind=CardKind.SIGNOFF,
        title="请确认完工并签字",
        body="请确认以下两项并为本次服务评分。" + "很长的说明" * 40,
        fields=(
            CardField("cause_told", "已告知故障原因", FieldKind.CHECKBOX),
            CardField("parts_confirmed", "配件更换已确认", FieldKind.CHECKBOX),
            CardField("rating", "满意度评分", FieldKind.SELECT, options=(FieldOption("5", "5 分"),)),
        ),
        actions=(CardAction("sign", "确认签字"), CardAction("not_fixed", "仍未修好")),
    )
    out = render_card(card, "signoff-1@1", card_url="https://x.test/")
    assert out["card_type"] == "multiple_interaction"
    assert out["submit_button"] == {"text": "确认签字", "key": "sign"}
    assert out["sub_title_text"].endswith("如需「仍未修好」，请直接回复「仍未修好」。")
    assert len(out["sub_title_text"]) <= 160


def test_a_card_whose_only_field_is_free_text_is_plain_buttons() -> None:
    card = Card(
        id="rca-1",
        kind=CardKind.TASK,
        title="超时根因分析",
        fields=(CardField("reason", "超时根因", FieldKind.TEXT, required=True),),
        actions=(CardAction("submit", "提交"),),
    )
    out = render_card(card, "rca-1@1", card_url="https://x.test/")
    assert out["card_type"] == "button_interaction"  # never a multiple_interaction without select_list
    assert "select_list" not in out and "button_selection" not in out
