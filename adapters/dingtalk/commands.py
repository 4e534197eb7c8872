"""Button presses on template-less cards, carried as chat text.

Robot action cards (`sampleActionCard*`) have no server callback. Their buttons open a URL;
DingTalk's `dtmd://dingtalkclient/sendMessage?content=...` link makes the client send `content`
to the bot as if the user typed it. We put the card id, the action and the submitted values in
that text between 〔 〕, percent-encoded so that no id or value can break the delimiters, and turn
it back into a CARD_ACTION when the message arrives. Anyone can type such a text by hand: the
service checks who may act and validates the values, exactly as for a real card callback.

Free text cannot ride on a button. A command may name a text field as its fourth part
(`〔card|action||field〕`): whatever the user writes after the closing 〕 becomes that field's value.
The card's recipient gets that command as a plain text message to copy, complete and send back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode

_COMMAND = re.compile(r"〔([^|〕\s]+)\|([^|〕\s]+)(?:\|([^|〕\s]*))?(?:\|([^|〕\s]+))?〕")


@dataclass(frozen=True, slots=True)
class CardCommand:
    card_id: str
    action: str
    values: dict[str, str] = field(default_factory=dict)


def command_text(
    label: str, card_id: str, action: str, values: dict[str, str] | None = None, *, text_field: str | None = None
) -> str:
    """The text the user's client sends when the button is pressed (visible in the chat)."""
    token = f"{quote(card_id, safe='')}|{quote(action, safe='')}"
    if values or text_field:
        token += "|" + (quote(urlencode(sorted(values.items())), safe="") if values else "")
    if text_field:
        token += "|" + quote(text_field, safe="")
    return f"{label}〔{token}〕"


def button_url(label: str, card_id: str, action: str, values: dict[str, str] | None = None) -> str:
    return "dtmd://dingtalkclient/sendMessage?content=" + quote(command_text(label, card_id, action, values), safe="")


def parse_command(text: str) -> CardCommand | None:
    match = _COMMAND.search(text)
    if match is None:
        return None
    card_id, action, raw_values, text_field = match.group(1), match.group(2), match.group(3), match.group(4)
    values = dict(parse_qsl(unquote(raw_values), keep_blank_values=True)) if raw_values else {}
    if text_field:
        values[unquote(text_field)] = text[match.end():].strip()
    return CardCommand(unquote(card_id), unquote(action), values)
