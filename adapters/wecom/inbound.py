"""Decrypted WeCom callback XML -> neutral InboundMessage.

wechatpy's parse_message does not know template_card_event (it becomes UnknownMessage), so
we read the dict from xmltodict ourselves, forcing lists where WeCom sends one element as a
dict and several as a list.
"""

from __future__ import annotations

import math
import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError, XMLParser

from adapters.base import adapter_logger
from adapters.wecom.task_id import decode_task_id
from adapters.wire import unix_seconds
from core.inbound import InboundKind, InboundMessage

log = adapter_logger(__name__)

PLATFORM = "wecom"
# The first option of every WeCom dropdown we render: "请选择" means "nothing chosen".
UNSET_OPTION_ID = "ticketbot-unset"

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class UnsafeXml(ValueError):
    """The XML declares a DTD or entities: never legitimate from WeCom."""


# Elements that are a list even when WeCom sends one (SelectedItems of a template_card_event).
_FORCE_LIST = frozenset({"SelectedItem", "OptionId"})


def parse_xml(raw: bytes | str) -> dict[str, Any]:
    """Parse WeCom XML safely: no DTD, no entities (billion laughs, XXE). Raises ValueError.

    The dict has xmltodict's shape (what the code reading it was written against): an element
    with text only is its stripped text (None if empty), one with children a dict of them, a
    repeated child a list, attributes "@name", mixed text "#text". It is built from the C
    ElementTree parser: every callback arrives twice per message (envelope and message), and
    xmltodict's Python SAX handlers were a third of the cost of accepting one."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if _DTD.search(data):
        raise UnsafeXml("DTD or entity declaration in callback XML")
    try:
        # Expat without a DTD knows only the five predefined entities and character references.
        parser = XMLParser()
        parser.feed(data)
        root = parser.close()
    except ParseError as exc:
        raise ValueError(f"malformed XML: {exc}") from exc
    value = _element_value(root) if root.tag == "xml" else None
    if not isinstance(value, dict):
        raise ValueError("no <xml> root")
    return value


def _element_value(element: Element) -> Any:
    if not len(element) and not element.attrib:  # the common case: a leaf with text
        return (element.text or "").strip() or None
    text = element.text or ""
    value: dict[str, Any] = {f"@{name}": attribute for name, attribute in element.attrib.items()}
    for child in element:
        if child.tail:
            text += child.tail
        item = _element_value(child)
        tag = child.tag
        if tag in value:
            existing = value[tag]
            if tag in _FORCE_LIST or isinstance(existing, _Repeated):
                existing.append(item)
            else:
                value[tag] = _Repeated([existing, item])
        else:
            value[tag] = [item] if tag in _FORCE_LIST else item
    if text := text.strip():
        value["#text"] = text
    return {k: list(v) if isinstance(v, _Repeated) else v for k, v in value.items()} if value else None


class _Repeated(list[Any]):
    """A child seen more than once (xmltodict makes it a list), while the parent is being built."""


def to_inbound(msg: dict[str, Any]) -> InboundMessage | None:
    """Translate one decrypted callback; None for kinds we acknowledge and ignore."""
    msg_type = _text(msg, "MsgType").lower()
    sender = _text(msg, "FromUserName")
    if not sender:
        return None
    if msg_type == "event":
        return _event(msg, sender)
    key = f"msg:{_text(msg, 'MsgId') or _text(msg, 'CreateTime') + ':' + sender}"
    if msg_type == "text":
        return InboundMessage(PLATFORM, key, sender, InboundKind.TEXT, text=_text(msg, "Content"))
    if msg_type == "image":
        return InboundMessage(PLATFORM, key, sender, InboundKind.IMAGE, media_ref=_text(msg, "MediaId") or None)
    if msg_type == "location":
        return InboundMessage(
            PLATFORM,
            key,
            sender,
            InboundKind.LOCATION,
            lat=_float(msg, "Location_X"),
            lng=_float(msg, "Location_Y"),
            text=_text(msg, "Label") or None,
        )
    log.info("wecom: ignoring message type %r from %r", msg_type, sender)
    return None


def _event(msg: dict[str, Any], sender: str) -> InboundMessage | None:
    event = _text(msg, "Event")
    created = _text(msg, "CreateTime")
    # Events have no MsgId: WeCom's documented dedupe key is FromUserName + CreateTime.
    key = f"evt:{sender}:{created}:{event.lower()}"
    match event.lower():
        case "template_card_event":
            return _card_event(msg, sender, created)
        case "enter_agent":
            return InboundMessage(PLATFORM, key, sender, InboundKind.ENTER)
        case "location":  # periodic position report, when enabled for the app
            return InboundMessage(
                PLATFORM, key, sender, InboundKind.LOCATION, lat=_float(msg, "Latitude"), lng=_float(msg, "Longitude")
            )
    log.info("wecom: ignoring event %r from %r", event, sender)
    return None


def _card_event(msg: dict[str, Any], sender: str, created: str) -> InboundMessage:
    task_id = _text(msg, "TaskId")
    event_key = _text(msg, "EventKey")
    card_id = decode_task_id(task_id)
    if card_id is None:
        log.warning("wecom: template_card_event with foreign task_id %r", task_id)
        card_id = task_id
    reply_context: dict[str, Any] = {"task_id": task_id, "card_type": _text(msg, "CardType")}
    if code := _text(msg, "ResponseCode"):
        reply_context["response_code"] = code
        reply_context["response_code_at"] = _int(created)
    return InboundMessage(
        PLATFORM,
        f"card:{sender}:{created}:{task_id}:{event_key}",
        sender,
        InboundKind.CARD_ACTION,
        card_id=card_id,
        action=event_key,
        values=selected_values(msg.get("SelectedItems")),
        reply_context=reply_context,
    )


def selected_values(items: Any) -> dict[str, str]:
    """SelectedItems -> {question key: option id(s)}; "请选择" becomes "" for the server to reject."""
    if not isinstance(items, dict):
        return {}
    selected = items.get("SelectedItem") or []
    if isinstance(selected, dict):  # defensive: parsed without force_list
        selected = [selected]
    values: dict[str, str] = {}
    for item in selected:
        if not isinstance(item, dict) or not (key := _text(item, "QuestionKey")):
            continue
        ids = (item.get("OptionIds") or {}).get("OptionId") if isinstance(item.get("OptionIds"), dict) else None
        if isinstance(ids, str):
            ids = [ids]
        chosen = [str(i) for i in ids or [] if i and str(i) != UNSET_OPTION_ID]
        values[key] = ",".join(chosen)
    return values


def _text(msg: dict[str, Any], name: str) -> str:
    value = msg.get(name)
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()


def _float(msg: dict[str, Any], name: str) -> float | None:
    try:
        value = float(_text(msg, name))
    except ValueError:
        return None
    return value if math.isfinite(value) else None  # "nan", "inf", 1e999 are no coordinates


def _int(value: str) -> int | None:
    try:
        return unix_seconds(value)
    except ValueError:
        return None
