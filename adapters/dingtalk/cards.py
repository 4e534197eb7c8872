"""Neutral Card -> DingTalk rendering.

Default (no template configured): a robot action card (`sampleActionCard`, `sampleActionCard2..5`)
or, with more buttons than DingTalk offers or none at all, `sampleMarkdown`. Buttons are `dtmd://`
links that send a command text back to the bot (see commands.py), so nothing has to be built or
imported in DingTalk's card builder.

Forms: action cards have no inputs. A card's checkboxes become statements the user affirms by
pressing a button, and the first select becomes one button per option (the sign-off card: the two
confirmations are listed, and each rating 1-5 is a button that submits both confirmations and that
rating). Free-text fields are asked for as an ordinary reply. The server validates whatever arrives.

Template mode (`DINGTALK_CARD_TEMPLATE_ID` set): `template_params` fills the cardParamMap of a
card-platform template built to the contract in docs/platforms/dingtalk.md (all values strings, as DingTalk requires).

Markdown: every text of the card (title, facts, body, closing note, field labels, button labels in
links, and the notification text above the card) goes into the markdown through
`adapters.markdown.dingtalk`, so what a customer typed shows as typed and can carry no link or image
(a `[点此](dtmd://…sendMessage…)` in a fault description would otherwise be a button that speaks for
whoever presses it). Message titles and button titles are plain text on DingTalk and stay as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from adapters import markdown
from adapters.dingtalk.commands import button_url, command_text
from core.cards import ActionStyle, Card, CardAction, CardField, FieldKind

# Robot action cards hold one button (sampleActionCard) or 2..5 (sampleActionCard2..5).
MAX_ACTION_CARD_BUTTONS = 5
_URGENT_MARK = '<font color="#FF0000">【紧急】</font>'


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class RobotMessage:
    """One robot message: the msgKey and its msgParam (serialised by the sender)."""

    msg_key: str
    msg_param: dict[str, str]


def _style_mark(action: CardAction) -> str:
    return "⚠ " if action.style is ActionStyle.DANGER else ""


def main_action(card: Card) -> CardAction | None:
    """The card's main submission: its first PRIMARY action, else its first action."""
    return next((a for a in card.actions if a.style is ActionStyle.PRIMARY), card.actions[0] if card.actions else None)


def buttons_for(card: Card) -> list[Button]:
    """Buttons for a card whose inputs must be expressed as buttons.

    Checkboxes are affirmed by the main action's buttons. A select becomes one button per option,
    combined with the action it belongs to: a required select is part of the main submission
    (the sign-off rating: 5分 · 确认签字 ...), an optional one is the argument of the other actions
    (the escalation's 转派给 X), which leaves the main action a plain button (确认). With a single
    action the select goes with it. Every other action is a plain button.
    """
    if card.closed_note is not None:
        return []
    main = main_action(card)
    checkboxes = {f.id: "true" for f in card.fields if f.kind is FieldKind.CHECKBOX}
    select = next((f for f in card.fields if f.kind is FieldKind.SELECT and f.options), None)
    select_goes_with_main = select is not None and (select.required or len(card.actions) == 1)
    buttons: list[Button] = []
    for action in card.actions:
        values = dict(checkboxes) if action == main else {}
        if select is not None and (action == main) == select_goes_with_main:
            for option in select.options:
                label = f"{_style_mark(action)}{option.label} · {action.label}"
                chosen = {**values, select.id: option.value}
                buttons.append(Button(label, button_url(label, card.id, action.id, chosen)))
        else:
            label = f"{_style_mark(action)}{action.label}"
            buttons.append(Button(label, button_url(label, card.id, action.id, values or None)))
    return buttons


_md = markdown.dingtalk


def _field_hint(field: CardField) -> str:
    label = _md(field.label)
    if field.kind is FieldKind.CHECKBOX:
        return f"- [x] {label}"
    if field.kind is FieldKind.SELECT:
        return f"- {label}：请点击下方对应按钮"
    return f"- {label}：请按下一条消息的提示回复{('（' + _md(field.placeholder) + '）') if field.placeholder else ''}"


def card_markdown(card: Card, *, prefix_text: str | None = None, urgent: bool = False) -> str:
    lines: list[str] = []
    if prefix_text:
        lines += [_md(prefix_text), ""]
    heading = f"{_URGENT_MARK}{_md(card.title)}" if (urgent or card.urgent) else _md(card.title)
    lines += [f"#### {heading}", ""]
    if card.ticket_number:
        lines += [f"**工单号**：{_md(card.ticket_number)}", ""]
    for label, value in card.facts:
        lines += [f"**{_md(label)}**：{_md(value)}", ""]
    if card.body:
        lines += [_md(card.body), ""]
    if card.closed_note is not None:
        lines += [f"> {_md(card.closed_note)}", ""]
    elif card.fields:
        checkboxes = [f for f in card.fields if f.kind is FieldKind.CHECKBOX]
        if checkboxes:
            lines += ["点击下方按钮即表示确认以下各项：", ""]
        lines += [_field_hint(f) for f in card.fields]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _preview_title(card: Card, urgent: bool) -> str:
    # The title is what the conversation list and the notification banner show.
    return f"【紧急】{card.title}" if (urgent or card.urgent) else card.title


def robot_card_message(card: Card, *, prefix_text: str | None = None, urgent: bool = False) -> RobotMessage:
    text = card_markdown(card, prefix_text=prefix_text, urgent=urgent)
    title = _preview_title(card, urgent)
    buttons = buttons_for(card)
    if not buttons:
        return RobotMessage("sampleMarkdown", {"title": title, "text": text})
    if len(buttons) == 1:
        return RobotMessage(
            "sampleActionCard",
            {"title": title, "text": text, "singleTitle": buttons[0].label, "singleURL": buttons[0].url},
        )
    if len(buttons) <= MAX_ACTION_CARD_BUTTONS:
        param = {"title": title, "text": text}
        for i, button in enumerate(buttons, start=1):
            param[f"actionTitle{i}"] = button.label
            param[f"actionURL{i}"] = button.url
        return RobotMessage(f"sampleActionCard{len(buttons)}", param)
    # Too many choices for an action card: markdown with one link per choice (dtmd links work there too).
    links = "\n".join(f"- [{_md(b.label)}]({b.url})" for b in buttons)
    return RobotMessage("sampleMarkdown", {"title": title, "text": f"{text}\n{links}\n"})


def text_reply_prompt(card: Card) -> RobotMessage | None:
    """For an open card with a free-text field: a plain text message (copyable, unlike an action
    card) holding the command that submits the card; what the user writes after it is the text.
    Like a select, a required text goes with the main action (超时根因 → 提交) and an optional one
    with the other action (不通过原因 → 质检不通过). Only the first text field is asked for this way."""
    main = main_action(card)
    field = next((f for f in card.fields if f.kind is FieldKind.TEXT), None)
    if card.closed_note is not None or main is None or field is None:
        return None
    others = [a for a in card.actions if a != main]
    action = main if (field.required or not others) else others[0]
    checkboxes = {f.id: "true" for f in card.fields if f.kind is FieldKind.CHECKBOX} if action == main else {}
    command = command_text(action.label, card.id, action.id, checkboxes or None, text_field=field.id)
    guide = f"如需「{action.label}」，请长按复制本条消息，在末尾写上{field.label}后发送："
    return RobotMessage("sampleText", {"content": f"{guide}\n{command} "})


def text_message(text: str, *, urgent: bool = False) -> RobotMessage:
    if urgent:
        text = f"#### {_URGENT_MARK}提醒\n\n{_md(text)}\n"
        return RobotMessage("sampleMarkdown", {"title": "【紧急】提醒", "text": text})
    return RobotMessage("sampleText", {"content": text})


def template_params(card: Card, *, prefix_text: str | None = None, urgent: bool = False) -> dict[str, str]:
    """cardParamMap for the card-platform template contract (docs/platforms/dingtalk.md). Values must be strings."""
    open_card = card.closed_note is None
    actions: list[dict[str, Any]] = [
        {"id": a.id, "label": a.label, "style": a.style.value} for a in card.actions if open_card
    ]
    fields = (
        []
        if card.closed_note is not None
        else [
            {
                "id": f.id,
                "label": f.label,
                "kind": f.kind.value,
                "options": [{"value": o.value, "label": o.label} for o in f.options],
                "required": f.required,
            }
            for f in card.fields
        ]
    )
    return {
        "card_id": card.id,
        "kind": card.kind.value,
        "title": _preview_title(card, urgent),
        "ticket_number": card.ticket_number or "",
        "markdown": card_markdown(card, prefix_text=prefix_text, urgent=urgent),
        "urgent": "true" if (urgent or card.urgent) else "false",
        "closed": "true" if card.closed_note is not None else "false",
        "closed_note": card.closed_note or "",
        "actions": json.dumps(actions, ensure_ascii=False),
        "fields": json.dumps(fields, ensure_ascii=False),
    }
