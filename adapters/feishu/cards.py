"""Neutral Card → Feishu card JSON 2.0 (schema "2.0": header + body.elements).

Mapping:
- title → header.title (template red when urgent, grey once closed, blue otherwise);
  ticket number → header.subtitle.
- facts → one markdown element, "**label**：value" per line (labels and values escaped by
  adapters.markdown.feishu, like every text this module puts into markdown).
- body → a plain_text `div` (no markup: customer text cannot inject <at> or links).
- actions without fields → buttons in a column_set, each with a callback behaviour whose
  value is {card_id, action} (the callback carries it back in action.value).
- fields → one `form`: CHECKBOX → `checker`, SELECT → `select_static`, TEXT → `input`,
  then one submit button (form_action_type "submit") per action; the answers come back in
  action.form_value keyed by field id. `required` is only a client hint: the server checks.
- closed_note → no buttons or form; a grey note instead.
JSON 2.0 rejects unknown properties and has no `action`/`note` modules, so only documented
2.0 components are used. Cards go out with config.update_multi = true (required for PATCH).
"""

from __future__ import annotations

import json
from typing import Any

from adapters import markdown
from core.cards import ActionStyle, Card, CardAction, CardField, FieldKind

MAX_CARD_BYTES = 30 * 1024
_md = markdown.feishu  # every text that goes into a `markdown` element
_BUTTON_TYPES = {ActionStyle.PRIMARY: "primary_filled", ActionStyle.DANGER: "danger", ActionStyle.DEFAULT: "default"}


class CardTooLarge(ValueError):
    def __init__(self, size: int) -> None:
        super().__init__(f"卡片 JSON {size} 字节，超过飞书 30 KB 上限")
        self.size = size


def render_card(card: Card) -> dict[str, Any]:
    template = "red" if card.urgent else ("grey" if card.closed_note else "blue")
    header: dict[str, Any] = {"title": _plain(card.title), "template": template}
    if card.ticket_number:
        header["subtitle"] = _plain(f"工单 {card.ticket_number}")
    elements: list[dict[str, Any]] = []
    if card.facts:
        lines = [f"**{_md(label)}**：{_md(value)}" for label, value in card.facts]
        elements.append({"tag": "markdown", "content": "\n".join(lines)})
    if card.body:
        elements.append({"tag": "div", "text": _plain(card.body)})
    if card.closed_note:
        elements.append({"tag": "div", "text": {**_plain(card.closed_note), "text_color": "grey"}})
    elif card.fields:
        elements.append(_form(card))
    elif card.actions:
        elements.append(_button_row(card, card.actions, submit=False))
    return {
        "schema": "2.0",
        "config": {"update_multi": True, "summary": {"content": card.title}},
        "header": header,
        "body": {"elements": elements},
    }


def card_content(card: Card) -> str:
    """The `content` string for im/v1/messages, within the 30 KB limit.

    Over the limit the body is shortened first (it is the free-text part); if the card is
    still too large CardTooLarge is raised (a permanent delivery failure).
    """
    content = _dumps(render_card(card))
    size = len(content.encode("utf-8"))
    if size <= MAX_CARD_BYTES:
        return content
    excess = size - MAX_CARD_BYTES
    body = card.body.encode("utf-8")
    if len(body) > excess + 64:
        shorter = body[: len(body) - excess - 64].decode("utf-8", "ignore") + "…（内容过长，已截断）"
        content = _dumps(render_card(_with_body(card, shorter)))
        size = len(content.encode("utf-8"))
        if size <= MAX_CARD_BYTES:
            return content
    raise CardTooLarge(size)


def text_content(text: str) -> tuple[str, str]:
    """(msg_type, content) for a plain notification.

    `text` messages parse <at user_id=...> tags, so anything with "<" goes as a `post`
    whose text nodes are literal.
    """
    if "<" not in text:
        return "text", _dumps({"text": text})
    return "post", post_content("", text)


def post_content(title: str, text: str) -> str:
    paragraphs = [[{"tag": "text", "text": line}] for line in text.split("\n")]
    return _dumps({"zh_cn": {"title": title, "content": paragraphs}})


def _form(card: Card) -> dict[str, Any]:
    elements: list[dict[str, Any]] = []
    for field in card.fields:
        elements.extend(_field(field))
    actions = card.actions or (CardAction("submit", "提交", ActionStyle.PRIMARY),)
    elements.append(_button_row(card, actions, submit=True))
    return {"tag": "form", "name": "form", "elements": elements}


def _field(field: CardField) -> list[dict[str, Any]]:
    label = field.label + ("（必填）" if field.required else "")
    if field.kind is FieldKind.CHECKBOX:
        return [{"tag": "checker", "name": field.id, "checked": False, "text": _plain(label)}]
    placeholder = _plain(field.placeholder or ("请选择" if field.kind is FieldKind.SELECT else "请输入"))
    heading = {"tag": "markdown", "content": f"**{_md(label)}**"}
    if field.kind is FieldKind.SELECT:
        options = [{"text": _plain(option.label), "value": option.value} for option in field.options]
        select = {
            "tag": "select_static",
            "name": field.id,
            "placeholder": placeholder,
            "options": options,
            "required": field.required,
        }
        return [heading, select]
    return [heading, {"tag": "input", "name": field.id, "placeholder": placeholder, "required": field.required}]


def _button_row(card: Card, actions: tuple[CardAction, ...], *, submit: bool) -> dict[str, Any]:
    columns = []
    for action in actions:
        button: dict[str, Any] = {
            "tag": "button",
            "name": f"action_{action.id}",
            "text": _plain(action.label),
            "type": _BUTTON_TYPES[action.style],
            "behaviors": [{"type": "callback", "value": {"card_id": card.id, "action": action.id}}],
        }
        if submit:
            button["form_action_type"] = "submit"
        columns.append({"tag": "column", "width": "auto", "elements": [button]})
    return {"tag": "column_set", "horizontal_spacing": "8px", "columns": columns}


def _with_body(card: Card, body: str) -> Card:
    data = card.to_dict()
    data["body"] = body
    return Card.from_dict(data)


def _plain(text: str) -> dict[str, str]:
    return {"tag": "plain_text", "content": text}




def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
