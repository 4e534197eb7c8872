"""The shape of the Feishu events we act on, checked once at the edge (pydantic models).

Translation (events.py) reads typed models, never raw dicts, so an event whose fields have the
wrong type (`sender_id` a string, `mentions` an object, `form_value` a list, a `chat_id` number)
is refused as one MalformedEvent (HTTP 400, one log line) instead of failing somewhere deeper.

Only the fields we read are declared; Feishu adds fields without notice, so the rest is ignored.
Types are strict: an id is a string and is never coerced from a number. Ids are bounded in length
(they become inbox keys and directory identities).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from adapters.feishu.errors import MalformedEvent

MAX_ID_CHARS = 256

Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
ShortStr = Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)]


def _coordinate(value: object) -> float:
    """Feishu sends coordinates as strings ("31.2304"); numbers are taken too, never bools, NaN or inf."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("应为数字")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("应为有限的数字")
    return number


Coordinate = Annotated[float, BeforeValidator(_coordinate)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Header(_Model):
    event_id: Id | None = None
    event_type: ShortStr | None = None


class UserIds(_Model):
    open_id: Id | None = None


# --- im.message.receive_v1 ---


class Sender(_Model):
    sender_id: UserIds | None = None
    sender_type: ShortStr = "user"


class Mention(_Model):
    key: ShortStr = ""
    id: UserIds | None = None
    name: StrictStr = ""


class Message(_Model):
    message_id: ShortStr = ""
    chat_id: ShortStr | None = None
    chat_type: ShortStr | None = None
    message_type: ShortStr | None = None
    content: StrictStr | None = None  # JSON text, read by the content models below
    mentions: list[Mention] | None = None


class MessageEvent(_Model):
    sender: Sender
    message: Message


class MessageEnvelope(_Model):
    header: Header
    event: MessageEvent


class TextContent(_Model):
    text: StrictStr = ""


class PostNode(_Model):
    tag: ShortStr | None = None
    text: StrictStr | None = None
    user_id: ShortStr | None = None


class PostContent(_Model):
    title: StrictStr | None = None
    content: list[list[PostNode] | None] | None = None


class ImageContent(_Model):
    image_key: Id


class LocationContent(_Model):
    name: StrictStr | None = None
    latitude: Coordinate
    longitude: Coordinate


# --- card.action.trigger ---

FormValue = StrictBool | StrictStr | list[StrictStr] | None


class CardActionBody(_Model):
    value: dict[str, Any] | StrictStr | None = None
    form_value: dict[str, FormValue] | None = None
    option: StrictStr | None = None
    name: ShortStr | None = None


class CardContext(_Model):
    open_message_id: ShortStr | None = None
    open_chat_id: ShortStr | None = None


class CardEvent(_Model):
    operator: UserIds | None = None
    token: ShortStr | None = None
    action: CardActionBody
    context: CardContext | None = None


class CardEnvelope(_Model):
    header: Header | None = None
    event: CardEvent


class OurCardValue(_Model):
    """The button value our cards carry (cards.py): which card, which action."""

    card_id: Id
    action: Id


# --- im.chat.access_event.bot_p2p_chat_entered_v1 ---


class P2pEvent(_Model):
    operator_id: UserIds | None = None
    chat_id: ShortStr | None = None


class P2pEnvelope(_Model):
    header: Header
    event: P2pEvent


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: object, where: str = "") -> M:
    """`data` as `model`, or MalformedEvent naming the first wrong field (never its value)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in (where, *first["loc"]) if part != "")
        raise MalformedEvent(f"事件字段格式不正确：{path or '(根)'}", field=path, error=first["type"]) from exc
