"""Neutral Card -> WeCom `template_card` JSON.

| neutral card                                   | WeCom card_type                                  |
|------------------------------------------------|--------------------------------------------------|
| several actions + one SELECT (offer 接单/拒单 +  | button_interaction: button_selection (the SELECT) |
|   拒单原因, escalation 确认/转派 + 转派给)         |   + button_list ≤6                               |
| actions + a form (CHECKBOX, or 2–3 SELECTs,     | multiple_interaction: ≤3 select_list +           |
|   or one action with a SELECT: sign-off, 派单)   |   submit_button (the first action)               |
| actions, no selectable field                    | button_interaction: button_list ≤6               |
| no actions (reminder, status, info, SOP)        | text_notice (card_action required)               |
| closed_note set, sent fresh                     | text_notice with the note emphasised             |
| closed_note set, update with response_code      | `button.replace_name` = the note                 |

WeCom has no checkbox, so a CHECKBOX becomes a dropdown "请选择 / 是"; a SELECT becomes
"请选择 / options...". "请选择" comes back as "" so the server rejects it with a clear
message (the client enforces nothing). multiple_interaction has one submit button: the other
actions (the sign-off's 仍未修好) are named in the text as a reply ("也可直接回复「仍未修好」"),
which the chat commands understand. Template cards have no free-text input: TEXT fields are
not rendered (their card handlers need a text-command path on WeCom).

Template cards show plain text (no markdown to escape), but urgent cards are sent with
enable_id_trans, which turns `$userName=ID$` anywhere in the card into a person's name: every text
of the card goes through `adapters.markdown.wecom` (invisible, stops the translation) except the
call-out this module writes itself.
"""

from __future__ import annotations

from typing import Any

from adapters import markdown
from adapters.base import adapter_logger
from adapters.wecom import limits as lim
from adapters.wecom.inbound import UNSET_OPTION_ID
from core.cards import ActionStyle, Card, CardField, CardKind, FieldKind

log = adapter_logger(__name__)

UNSET_LABEL = "请选择"
CHECKBOX_YES_ID = "true"  # the neutral CHECKBOX value when ticked
URGENT_TAG = "【紧急】"

_t = markdown.wecom  # every text of the card that came from the neutral card
# button_list.style is 1..4 (1 default). Colours are client-defined.
_BUTTON_STYLE = {ActionStyle.PRIMARY: 1, ActionStyle.DEFAULT: 2, ActionStyle.DANGER: 3}


def render_card(
    card: Card,
    task_id: str,
    *,
    card_url: str,
    source_desc: str = "工单助手",
    urgent: bool = False,
    recipient_id: str | None = None,
) -> dict[str, Any]:
    """The `template_card` object for message/send (or a full update_template_card)."""
    urgent = urgent or card.urgent
    base = _common(card, task_id, source_desc, urgent, recipient_id)
    if card.closed_note is not None:
        return _closed_notice(card, base, card_url)
    if not card.actions:
        return _text_notice(card, base, card_url, urgent)
    selects = [f for f in card.fields if f.kind is FieldKind.SELECT]
    checkboxes = [f for f in card.fields if f.kind is FieldKind.CHECKBOX]
    if len(card.actions) > 1 and len(selects) == 1 and not checkboxes:
        return _button_interaction(card, base, selects[0])
    if selects or checkboxes:
        return _multiple_interaction(card, base)
    return _button_interaction(card, base, None)


def render_urgent_text(text: str, *, card_url: str, recipient_id: str, source_desc: str) -> dict[str, Any]:
    """A strong reminder given as plain text: a red-sourced text_notice that calls the person by name."""
    card = Card(id="urgent", kind=CardKind.REMINDER, title="紧急提醒", body=text, urgent=True)
    return render_card(card, "", card_url=card_url, source_desc=source_desc, urgent=True, recipient_id=recipient_id)


def closed_button_update(card: Card) -> dict[str, Any]:
    """update_template_card body part that greys out the buttons and shows the closing note."""
    note = _t(card.closed_note or "已处理")
    return {"button": {"replace_name": lim.cut_chars(note, lim.REPLACE_NAME_CHARS)}}


def _common(card: Card, task_id: str, source_desc: str, urgent: bool, recipient_id: str | None) -> dict[str, Any]:
    title = (URGENT_TAG if urgent and not card.title.startswith(URGENT_TAG) else "") + _t(card.title)
    main_title: dict[str, str] = {"title": lim.cut_chars(title, lim.MAIN_TITLE_CHARS)}
    if card.ticket_number:
        main_title["desc"] = lim.cut_chars(f"工单 {card.ticket_number}", lim.MAIN_DESC_CHARS)
    out: dict[str, Any] = {
        "task_id": task_id,
        # desc_color 2 = red: the most visible marker an app card has.
        "source": {"desc": source_desc, "desc_color": 2 if urgent else 0},
        "main_title": main_title,
    }
    facts = list(card.facts)
    shown, overflow = facts[: lim.HORIZONTAL_CONTENT_MAX], facts[lim.HORIZONTAL_CONTENT_MAX :]
    if shown:
        out["horizontal_content_list"] = [
            {"keyname": lim.cut_chars(_t(k), lim.KEYNAME_CHARS), "value": lim.cut_chars(_t(v), lim.VALUE_CHARS)}
            for k, v in shown
        ]
    body = _t(card.body)
    if overflow:
        body = "\n".join([body, *(f"{_t(k)}：{_t(v)}" for k, v in overflow)]).strip()
    if urgent and recipient_id:
        # "$userName=ID$" is translated to the person's name (enable_id_trans=1): an @-style call-out.
        body = f"$userName={recipient_id}$，请立即处理。" + (f"\n{body}" if body else "")
    if body:
        out["sub_title_text"] = lim.cut_chars(body, lim.SUB_TITLE_CHARS)
    return out


def _notice(base: dict[str, Any], card_url: str) -> dict[str, Any]:
    # A text_notice cannot call back, so it needs no task_id (and cannot collide on one);
    # card_action is mandatory for this card type.
    out = {"card_type": "text_notice", **base, "card_action": {"type": 1, "url": card_url}}
    out.pop("task_id", None)
    return out


def _text_notice(card: Card, base: dict[str, Any], card_url: str, urgent: bool) -> dict[str, Any]:
    out = _notice(base, card_url)
    if urgent:
        out["emphasis_content"] = {"title": "紧急", "desc": "请立即处理"}
    return out


def _closed_notice(card: Card, base: dict[str, Any], card_url: str) -> dict[str, Any]:
    note = _t(card.closed_note or "已处理")
    out = _notice(base, card_url)
    out["emphasis_content"] = {"title": lim.cut_chars(note, lim.EMPHASIS_TITLE_CHARS)}
    if len(note) > lim.EMPHASIS_TITLE_CHARS:
        text = "\n".join(filter(None, [note, out.get("sub_title_text", "")]))
        out["sub_title_text"] = lim.cut_chars(text, lim.SUB_TITLE_CHARS)
    return out


def _button_interaction(card: Card, base: dict[str, Any], selection: CardField | None) -> dict[str, Any]:
    if len(card.actions) > lim.BUTTON_LIST_MAX:
        log.warning("wecom: card %r has %d buttons, WeCom shows %d", card.id, len(card.actions), lim.BUTTON_LIST_MAX)
    buttons = [
        {
            "type": 0,  # 0 = callback (template_card_event), not a link
            "text": lim.cut_chars(_t(a.label), lim.BUTTON_TEXT_CHARS),
            "style": _BUTTON_STYLE.get(a.style, 1),
            "key": a.id,
        }
        for a in card.actions[: lim.BUTTON_LIST_MAX]
    ]
    out = {"card_type": "button_interaction", **base, "button_list": buttons}
    if selection is not None:
        # Its choice comes back in the press's SelectedItems whichever button was pressed (as in
        # WeCom's template_card_event example; not verified against a live corp, so the card
        # bodies also name the chat command: 「拒单 工单号 原因」, 「转派」).
        out["button_selection"] = _select(selection)
    return out


def _multiple_interaction(card: Card, base: dict[str, Any]) -> dict[str, Any]:
    selectable = [f for f in card.fields if f.kind in (FieldKind.CHECKBOX, FieldKind.SELECT)]
    if len(selectable) != len(card.fields) or len(selectable) > lim.SELECT_LIST_MAX:
        log.warning("wecom: card %r: only %d checkbox/select fields fit a WeCom form", card.id, lim.SELECT_LIST_MAX)
    submit, others = card.actions[0], card.actions[1:]
    if others:
        hint = "".join(f"如需「{_t(a.label)}」，请直接回复「{_t(a.label)}」。" for a in others)
        # The hint must survive the cut: shorten the text before it instead.
        text = lim.cut_chars(base.get("sub_title_text", ""), max(lim.SUB_TITLE_CHARS - len(hint) - 1, 0))
        base = {**base, "sub_title_text": "\n".join(filter(None, [text, hint]))[: lim.SUB_TITLE_CHARS]}
    return {
        "card_type": "multiple_interaction",
        **base,
        "select_list": [_select(f) for f in selectable[: lim.SELECT_LIST_MAX]],
        "submit_button": {"text": lim.cut_chars(_t(submit.label), lim.BUTTON_TEXT_CHARS), "key": submit.id},
    }


def _select(field: CardField) -> dict[str, Any]:
    options = [{"id": UNSET_OPTION_ID, "text": UNSET_LABEL}]
    if field.kind is FieldKind.CHECKBOX:
        options.append({"id": CHECKBOX_YES_ID, "text": "是"})
    else:
        options += [
            {"id": o.value, "text": lim.cut_chars(_t(o.label), lim.OPTION_TEXT_CHARS)}
            for o in field.options[: lim.SELECT_OPTIONS_MAX - 1]
        ]
    return {
        "question_key": field.id,
        "title": lim.cut_chars(_t(field.label), lim.SELECT_TITLE_CHARS),
        "selected_id": UNSET_OPTION_ID,
        "option_list": options,
    }
