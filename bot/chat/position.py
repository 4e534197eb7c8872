"""`位置 纬度,经度`: a typed position counts as a shared location on every platform.

DingTalk robots receive no location messages, and a desk PC cannot share one either; the
typed form goes through the same LOCATION handler as a shared location.
"""

from __future__ import annotations

import re
from dataclasses import replace

from bot.chat.conversation import _INBOUND_HANDLERS, Conversation, Incoming, text_command
from core.inbound import InboundKind
from core.model import Role

POSITION = re.compile(r"^\s*(-?\d{1,2}(?:\.\d+)?)\s*[,，\s]\s*(-?\d{1,3}(?:\.\d+)?)\s*$")
USAGE = "用法：位置 纬度,经度，例如：位置 31.2041,121.5901"


@text_command("位置", roles={Role.TECHNICIAN, Role.CUSTOMER}, usage="位置 纬度,经度",
              summary="无法共享位置时，手动发送当前位置")
async def _typed_position(conv: Conversation, inc: Incoming) -> None:
    match = POSITION.match(" ".join(inc.args))
    if match is None:
        await conv.reply(inc.person, inc.message, USAGE)
        return
    lat, lng = float(match.group(1)), float(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        await conv.reply(inc.person, inc.message, "位置超出范围。" + USAGE)
        return
    handler = _INBOUND_HANDLERS.get(InboundKind.LOCATION)
    if handler is None:
        await conv.reply(inc.person, inc.message, "暂不支持位置信息。")
        return
    await handler(conv, inc.person, replace(inc.message, kind=InboundKind.LOCATION, text=None, lat=lat, lng=lng))
