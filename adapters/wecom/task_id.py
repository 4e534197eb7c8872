"""Neutral card id <-> WeCom template_card task_id.

WeCom wants task_id unique per application *forever* (42014 otherwise), at most 128 bytes
of [0-9A-Za-z_-@]. A neutral card is sent more than once (a fresh copy when its
response_code has expired), so the task_id is `<escaped card id>@<send salt>`:

- letters, digits and '-' pass through; every other byte becomes `_XX` (hex), so '@'
  never appears in the escaped part and the last '@' splits cleanly;
- the salt is the outbox id: a retried delivery reuses the same task_id (WeCom's duplicate
  check / 42014 catch a resend), a new delivery of the same card gets a new one.

Decoding needs no storage: the callback's TaskId alone gives the card id back.
"""

from __future__ import annotations

import string

from adapters.wecom.limits import TASK_ID_MAX_BYTES

_PLAIN = frozenset(string.ascii_letters + string.digits + "-")
_HEX = frozenset("0123456789ABCDEF")


class TaskIdTooLong(ValueError):
    def __init__(self, card_id: str, length: int) -> None:
        super().__init__(f"card id {card_id!r} needs a {length}-byte task_id (max {TASK_ID_MAX_BYTES})")
        self.card_id = card_id
        self.length = length


def encode_task_id(card_id: str, salt: str | int) -> str:
    escaped = "".join(ch if ch in _PLAIN else "".join(f"_{b:02X}" for b in ch.encode()) for ch in card_id)
    task_id = f"{escaped}@{salt}"
    if len(task_id) > TASK_ID_MAX_BYTES or not card_id:
        raise TaskIdTooLong(card_id, len(task_id))
    return task_id


def decode_task_id(task_id: str) -> str | None:
    """The neutral card id, or None when `task_id` was not made by encode_task_id."""
    escaped, sep, _salt = task_id.rpartition("@")
    if not sep or not escaped:
        return None
    out = bytearray()
    i = 0
    while i < len(escaped):
        ch = escaped[i]
        if ch in _PLAIN:
            out += ch.encode()
            i += 1
        elif ch == "_" and i + 3 <= len(escaped) and set(escaped[i + 1 : i + 3]) <= _HEX:
            out.append(int(escaped[i + 1 : i + 3], 16))
            i += 3
        else:
            return None
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None
