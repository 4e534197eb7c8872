"""`位置 纬度,经度`: a typed position counts as a shared location on every platform.

DingTalk robots receive no location messages, and a desk PC cannot share one either; the
typed form goes through the same LOCATION handler as a shared location.

A customer's location is the site of their newest open ticket that has none, else of their next
report within LOCATION_WINDOW_MINUTES (core/intake/details.py); staff positions go on to the
lifecycle (check-in, the technician's position). `地址 …` and `设备编号 …` give the other details
of a report (see docs/masterdata.md, "Intake prefill").
"""

from __future__ import annotations

import re
from dataclasses import replace

from bot.chat.conversation import _INBOUND_HANDLERS, Conversation, Incoming, inbound_handler, text_command
from core.commands import ReportFault
from core.errors import InvalidInput
from core.inbound import InboundKind, InboundMessage
from core.intake.details import GiveAddress, GiveAssetNumber, ShareSite
from core.model import Person, Role

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


_previous_location_handler = _INBOUND_HANDLERS.get(InboundKind.LOCATION)


@inbound_handler(InboundKind.LOCATION)
async def _location(conv: Conversation, person: Person, message: InboundMessage) -> None:
    if person.role is not Role.CUSTOMER and _previous_location_handler is not None:
        await _previous_location_handler(conv, person, message)
        return
    if message.lat is None or message.lng is None or not (-90 <= message.lat <= 90 and -180 <= message.lng <= 180):
        raise InvalidInput("位置信息不完整，请重新共享位置。")
    await conv.run(ShareSite(message.lat, message.lng), person, message)


@text_command("地址", roles={Role.CUSTOMER}, usage="地址 <详细地址>", summary="补充报修地点（没有共享位置时）")
async def _address(conv: Conversation, inc: Incoming) -> None:
    await conv.run(GiveAddress(" ".join(inc.args)), inc.person, inc.message)


@text_command("车牌号", "车牌", roles={Role.CUSTOMER}, usage="车牌 <车牌号> [故障描述]",
              summary="报修的车辆：带描述即报修，单独发送则关联到刚报的工单（设备请发「设备编号 编号」）")
async def _plate(conv: Conversation, inc: Incoming) -> None:
    # `设备编号 X` (bot/chat/sla.py) works the same way for serial numbers, plates and VINs.
    if not inc.args:
        await conv.reply(inc.person, inc.message, "用法：车牌 沪A12345 [故障描述]")
        return
    number, description = inc.args[0], " ".join(inc.args[1:])
    if description:
        await conv.run(ReportFault(description, subject=number), inc.person, inc.message)
    else:
        await conv.run(GiveAssetNumber(number), inc.person, inc.message)
