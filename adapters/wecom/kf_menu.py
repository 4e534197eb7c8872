"""msgmenu click ids: a card action travels as the menu id and comes back in the click's text message.

WeChat users get no template cards: a card's buttons become a msgmenu whose click items carry
"<card id>|<action id>" (at most 64 bytes); the click comes back through kf/sync_msg as a text
message with `menu_id`, which becomes a CARD_ACTION for the same card.
"""

from __future__ import annotations

MENU_ID_MAX_BYTES = 64
_SEP = "|"


class MenuIdTooLong(ValueError):
    def __init__(self, card_id: str, action: str) -> None:
        super().__init__(f"msgmenu id for card {card_id!r} action {action!r} exceeds {MENU_ID_MAX_BYTES} bytes")
        self.card_id = card_id
        self.action = action


def encode_menu_id(card_id: str, action: str) -> str:
    menu_id = f"{card_id}{_SEP}{action}"
    if len(menu_id.encode()) > MENU_ID_MAX_BYTES or _SEP in card_id:
        raise MenuIdTooLong(card_id, action)
    return menu_id


def decode_menu_id(menu_id: str) -> tuple[str, str] | None:
    card_id, sep, action = menu_id.partition(_SEP)
    return (card_id, action) if sep and card_id and action else None
