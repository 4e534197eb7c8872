"""Neutral cards rendered as Feishu JSON 2.0 cards."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.feishu.cards import MAX_CARD_BYTES, CardTooLarge, card_content, render_card, text_content
from core.cards import ActionStyle, Card, CardAction, CardField, CardKind, FieldKind, FieldOption

# JSON 2.0 rejects unknown properties: every key we emit must be a documented one.
ALLOWED: dict[str, set[str]] = {
    "markdown": {"tag", "content"},
    "div": {"tag", "text"},
    "column_set": {"tag", "horizontal_spacing", "columns"},
    "column": {"tag", "width", "elements"},
    "button": {"tag", "name", "text", "type", "behaviors", "form_action_type"},
    "form": {"tag", "name", "elements"},
    "checker": {"tag", "name", "checked", "text"},
    "select_static": {"tag", "name", "placeholder", "options", "required"},
    "input": {"tag", "name", "placeholder", "required"},
}

OFFER = Card(
    id="card-offer-1",
    kind=CardKind.OFFER,
    title="新工单派单",
    ticket_number="WO-20240501-0001",
    facts=(("设备", "3号注塑机"), ("故障", "液压油泄漏 <at id=all></at> **")),
    body="客户描述：机台下方有油渍。",
    actions=(CardAction("accept", "接单", ActionStyle.PRIMARY), CardAction("reject", "拒单", ActionStyle.DANGER)),
)

SIGNOFF = Card(
    id="card-signoff-1",
    kind=CardKind.SIGNOFF,
    title="请确认维修结果",
    ticket_number="WO-20240501-0001",
    fields=(
        CardField("cause_told", "已告知故障原因", FieldKind.CHECKBOX, required=True),
        CardField("parts_ok", "配件更换已确认", FieldKind.CHECKBOX, required=True),
        CardField("rating", "评分", FieldKind.SELECT, tuple(FieldOption(str(i), f"{i} 分") for i in range(1, 6)), True),
        CardField("remark", "备注", FieldKind.TEXT, placeholder="可选"),
    ),
    actions=(CardAction("confirm", "确认验收", ActionStyle.PRIMARY),),
)


def walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "tag" in node and node["tag"] in ALLOWED | {"plain_text": set()}:
            found.append(node)
        for value in node.values():
            found.extend(walk(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(walk(item))
    return found


def components(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in walk(card["body"]) if c["tag"] != "plain_text"]


def test_offer_card_is_json_2_with_callback_buttons() -> None:
    card = render_card(OFFER)
    assert card["schema"] == "2.0"
    assert card["config"]["update_multi"] is True
    assert card["header"]["title"] == {"tag": "plain_text", "content": "新工单派单"}
    assert card["header"]["subtitle"]["content"] == "工单 WO-20240501-0001"
    assert card["header"]["template"] == "blue"
    buttons = [c for c in components(card) if c["tag"] == "button"]
    assert [b["text"]["content"] for b in buttons] == ["接单", "拒单"]
    assert [b["behaviors"] for b in buttons] == [
        [{"type": "callback", "value": {"card_id": "card-offer-1", "action": "accept"}}],
        [{"type": "callback", "value": {"card_id": "card-offer-1", "action": "reject"}}],
    ]
    assert [b["type"] for b in buttons] == ["primary_filled", "danger"]
    assert all("form_action_type" not in b for b in buttons)


def test_facts_are_markdown_lines_with_user_text_escaped() -> None:
    card = render_card(OFFER)
    facts = card["body"]["elements"][0]
    assert facts["tag"] == "markdown"
    assert facts["content"].startswith("**设备**：3号注塑机\n**故障**：液压油泄漏 ")
    assert "<at" not in facts["content"] and "**" not in facts["content"].split("：", 2)[2]
    assert card["body"]["elements"][1] == {"tag": "div", "text": {"tag": "plain_text", "content": OFFER.body}}


def test_urgent_card_has_a_red_header() -> None:
    urgent = Card(id="c", kind=CardKind.REMINDER, title="即将超时", urgent=True)
    assert render_card(urgent)["header"]["template"] == "red"


def test_signoff_card_is_a_form_with_checkers_select_input_and_submit() -> None:
    card = render_card(SIGNOFF)
    [form] = [c for c in card["body"]["elements"] if c["tag"] == "form"]
    parts = [c for c in walk(form["elements"]) if c["tag"] != "plain_text"]
    checkers = [c for c in parts if c["tag"] == "checker"]
    assert [(c["name"], c["text"]["content"], c["checked"]) for c in checkers] == [
        ("cause_told", "已告知故障原因（必填）", False),
        ("parts_ok", "配件更换已确认（必填）", False),
    ]
    [select] = [c for c in parts if c["tag"] == "select_static"]
    assert select["name"] == "rating" and select["required"] is True
    assert [o["value"] for o in select["options"]] == ["1", "2", "3", "4", "5"]
    assert select["options"][4]["text"] == {"tag": "plain_text", "content": "5 分"}
    [text_input] = [c for c in parts if c["tag"] == "input"]
    assert text_input["name"] == "remark" and text_input["placeholder"]["content"] == "可选"
    [submit] = [c for c in parts if c["tag"] == "button"]
    assert submit["form_action_type"] == "submit"
    assert submit["behaviors"][0]["value"] == {"card_id": "card-signoff-1", "action": "confirm"}
    names = [c["name"] for c in walk(card) if "name" in c]
    assert len(names) == len(set(names)), "names must be unique within a card"


def test_closed_card_shows_the_note_instead_of_buttons() -> None:
    data = OFFER.to_dict() | {"closed_note": "已由 李工 接单"}
    card = render_card(Card.from_dict(data))
    assert card["header"]["template"] == "grey"
    assert not [c for c in components(card) if c["tag"] in {"button", "form"}]
    assert card["body"]["elements"][-1]["text"]["content"] == "已由 李工 接单"
    closed_form = render_card(Card.from_dict(SIGNOFF.to_dict() | {"closed_note": "已验收"}))
    assert not [c for c in components(closed_form) if c["tag"] in {"button", "form", "checker"}]


@pytest.mark.parametrize("card", [OFFER, SIGNOFF, Card(id="s", kind=CardKind.STATUS, title="工单状态")])
def test_only_documented_properties_are_emitted(card: Card) -> None:
    rendered = render_card(card)
    assert set(rendered) == {"schema", "config", "header", "body"}
    for component in components(rendered):
        assert set(component) <= ALLOWED[component["tag"]], component


def test_card_content_respects_30_kb() -> None:
    long_body = Card(id="b", kind=CardKind.INFO, title="长文", body="很长的描述。" * 5000)
    content = card_content(long_body)
    assert len(content.encode("utf-8")) <= MAX_CARD_BYTES
    assert "已截断" in content
    json.loads(content)
    facts = tuple((f"项{i}", "值" * 50) for i in range(400))
    too_many_facts = Card(id="f", kind=CardKind.INFO, title="事实", facts=facts)
    with pytest.raises(CardTooLarge):
        card_content(too_many_facts)


def test_plain_text_goes_as_text_and_markup_goes_as_post() -> None:
    assert text_content("您的工单已受理") == ("text", '{"text":"您的工单已受理"}')
    msg_type, content = text_content('注意 <at user_id="all"></at>\n第二行')
    assert msg_type == "post"
    assert json.loads(content)["zh_cn"]["content"] == [
        [{"tag": "text", "text": '注意 <at user_id="all"></at>'}],
        [{"tag": "text", "text": "第二行"}],
    ]
