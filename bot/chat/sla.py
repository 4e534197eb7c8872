"""Chat commands for the SLA matrix, the holiday overrides and the intake guard's evidence.

    SLA                                   the matrix, settings and schedule warnings (supervisors, admins)
    SLA 查看 <优先级> <影响> <时段>          one cell
    SLA 设置 <优先级> <影响> <时段> 响应 <时长> 解决 <时长> [计时 工作时间|自然时间]
    SLA 历史 / SLA 回滚 <版本>              versions (0 = shipped defaults)
    SLA 解释 <优先级> <影响> [时间]          the deadlines a report now (or then) would get
    节假日                                 overrides and whether this/next year's schedule is known
    节假日 设置 <日期> 休息|上班 [备注]      admins enter the State Council notice
    节假日 删除 <日期> / 节假日 确认 <年份>
    设备编号 <编号>                         a customer's evidence for an urgent report (photos work too)
Durations: 30, 30分钟, 2小时, 1.5h. Times: 2026-11-20T17:50+08:00 or 2026-11-20 17:50 (tenant zone).
"""

from __future__ import annotations

import re
from datetime import date, datetime

# The lifecycle's IMAGE handler must be registered before this module wraps it (below), whoever imports
# this module first (the console's SLA page does, before the runtime imports the command modules).
import bot.chat.lifecycle  # noqa: F401
from bot.chat.conversation import _INBOUND_HANDLERS, Conversation, HelpLine, Incoming, inbound_handler, text_command
from core.commands import ReportFault
from core.errors import InvalidInput
from core.inbound import InboundKind, InboundMessage
from core.intake.details import GiveAssetNumber
from core.model import Person, Role
from core.sla.admin import (
    ConfirmCalendarYear,
    ExplainSla,
    RemoveCalendarDay,
    RollbackSla,
    SetCalendarDay,
    SetSlaCell,
    ShowCalendar,
    ShowSla,
    ShowSlaCell,
    ShowSlaHistory,
)
from core.sla.calendar import parse_instant
from core.sla.tracking import SupplyUrgentEvidence

STAFF = {Role.SUPERVISOR, Role.ADMIN}
SLA_USAGE = (
    "用法：SLA｜SLA 查看 紧急 全厂 工作时间｜SLA 设置 紧急 全厂 工作时间 响应 15 解决 120 [计时 自然时间]｜"
    "SLA 历史｜SLA 回滚 3｜SLA 解释 紧急 全厂 [2026-11-20 17:50]"
)
CALENDAR_USAGE = (
    "用法：节假日｜节假日 设置 2027-02-05 休息 春节｜节假日 设置 2027-02-07 上班｜"
    "节假日 删除 2027-02-05｜节假日 确认 2027"
)
_DURATION = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*(分钟|分|min|m|小时|时|h)?$", re.IGNORECASE)
_FIELD = re.compile(r"(响应|解决|计时)\s*[=:：]?\s*([^\s=:：]+)")
_FIELD_KEYS = {"响应": "response", "解决": "resolution", "计时": "clock"}


def parse_minutes(text: str, what: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise InvalidInput(f"无法识别的{what}「{text}」，请写分钟数或时长，例如 30、30分钟、2小时。")
    value = float(match.group(1))
    unit = (match.group(2) or "").lower()
    return value * 60 if unit in {"小时", "时", "h"} else value


def parse_moment(text: str, conv: Conversation) -> datetime:
    """ISO 8601 with an offset, or a local "YYYY-MM-DD HH:MM" in the tenant's zone."""
    cleaned = text.strip()
    try:
        return parse_instant(cleaned)
    except InvalidInput:
        try:
            naive = datetime.fromisoformat(cleaned.replace("/", "-"))
        except ValueError:
            raise InvalidInput(f"无法识别的时间：{text}（例如 2026-11-20 17:50）") from None
        return naive.replace(tzinfo=conv.service.config.timezone)


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip().replace("/", "-"))
    except ValueError:
        raise InvalidInput(f"无法识别的日期：{text}（例如 2027-02-05）") from None


def parse_sla_command(args: list[str], conv: Conversation) -> object:
    if not args or (args[0] in {"查看", "矩阵", "列表"} and len(args) == 1):
        return ShowSla()
    verb, rest = args[0], args[1:]
    if verb == "查看":
        if len(rest) != 3:
            raise InvalidInput(f"请写明优先级、影响范围和时段。{SLA_USAGE}")
        return ShowSlaCell(*rest)
    if verb in {"设置", "修改"}:
        if len(rest) < 5:
            raise InvalidInput(f"SLA 设置需要：优先级 影响 时段，再加上 响应/解决/计时 中至少一项。{SLA_USAGE}")
        priority, impact, band = rest[:3]
        tail = " ".join(rest[3:])
        fields = {_FIELD_KEYS[k]: v for k, v in _FIELD.findall(tail)}
        leftover = _FIELD.sub("", tail).strip()
        if not fields or leftover:
            raise InvalidInput(f"看不懂「{leftover or tail}」。{SLA_USAGE}")
        return SetSlaCell(
            priority, impact, band,
            response_minutes=parse_minutes(fields["response"], "响应时限") if "response" in fields else None,
            resolution_minutes=parse_minutes(fields["resolution"], "解决时限") if "resolution" in fields else None,
            clock=fields.get("clock"),
        )
    if verb == "历史" and not rest:
        return ShowSlaHistory()
    if verb == "回滚":
        match = re.fullmatch(r"(?:v|版本)?(\d{1,9})", rest[0], re.IGNORECASE) if len(rest) == 1 else None
        if match is None:
            raise InvalidInput(f"请给出一个版本号，例如：SLA 回滚 3（0 = 出厂默认）。{SLA_USAGE}")
        return RollbackSla(int(match.group(1)))
    if verb == "解释":
        if len(rest) < 2:
            raise InvalidInput(f"请写明优先级和影响范围。{SLA_USAGE}")
        at = parse_moment(" ".join(rest[2:]), conv) if rest[2:] else None
        return ExplainSla(rest[0], rest[1], at)
    raise InvalidInput(f"看不懂这条 SLA 命令。{SLA_USAGE}")


def parse_calendar_command(args: list[str]) -> object:
    if not args:
        return ShowCalendar()
    verb, rest = args[0], args[1:]
    if verb == "设置":
        if len(rest) < 2 or rest[1] not in {"休息", "放假", "上班", "工作"}:
            raise InvalidInput(f"请写明日期和「休息」或「上班」。{CALENDAR_USAGE}")
        return SetCalendarDay(parse_day(rest[0]), rest[1] in {"上班", "工作"}, " ".join(rest[2:]))
    if verb == "删除" and len(rest) == 1:
        return RemoveCalendarDay(parse_day(rest[0]))
    if verb == "确认" and len(rest) == 1:
        if not re.fullmatch(r"\d{4}", rest[0].removesuffix("年")):
            raise InvalidInput(f"请写明年份，例如：节假日 确认 2027。{CALENDAR_USAGE}")
        return ConfirmCalendarYear(int(rest[0].removesuffix("年")))
    raise InvalidInput(f"看不懂这条节假日命令。{CALENDAR_USAGE}")


@text_command("SLA", "sla", roles=STAFF, usage="SLA｜SLA 查看/设置/历史/回滚/解释", summary="查看/修改 SLA 矩阵")
async def _sla(conv: Conversation, inc: Incoming) -> None:
    await conv.run(parse_sla_command(inc.args, conv), inc.person, inc.message)


@text_command("节假日", roles=STAFF, summary="查看节假日与调休安排", help=(
    HelpLine("节假日 设置/删除/确认", "录入国务院节假日与调休安排", frozenset({Role.ADMIN})),))
async def _calendar(conv: Conversation, inc: Incoming) -> None:
    await conv.run(parse_calendar_command(inc.args), inc.person, inc.message)


@text_command("设备编号", "设备号", roles={Role.CUSTOMER}, usage="设备编号 编号",
              summary="报修时写明设备编号（紧急报修的凭证，拍照也可以）",
              refusal="抱歉，只有报修客户可以补充紧急工单的材料（设备编号）。")
async def _device_number(conv: Conversation, inc: Incoming) -> None:
    value = " ".join(inc.args)
    if value:
        upgraded = await conv.run(SupplyUrgentEvidence("device", value, quiet=True), inc.person, inc.message)
        if upgraded is None and len(inc.args) == 1:  # the number alone: the asset of the customer's last report
            await conv.run(GiveAssetNumber(value), inc.person, inc.message)  # or of the next (core/intake/details.py)
        elif upgraded is None:  # nothing waits for evidence: a report that starts with the device number
            await conv.run(ReportFault(inc.text, subject=value.split()[0][:64]), inc.person, inc.message)
        return
    await conv.run(SupplyUrgentEvidence("device", value), inc.person, inc.message)


# A customer's photo also confirms an urgent report. Photos belong to the lifecycle feature, so the
# handler registered before this module keeps running first; see core.sla.tracking.on_customer_evidence
# for the same upgrade from inside a command.
_previous_image_handler = _INBOUND_HANDLERS.get(InboundKind.IMAGE)


@inbound_handler(InboundKind.IMAGE)
async def _image(conv: Conversation, person: Person, message: InboundMessage) -> None:
    if _previous_image_handler is not None:
        await _previous_image_handler(conv, person, message)
    if person.role is not Role.CUSTOMER:
        if _previous_image_handler is None:
            await conv.reply(person, message, "已收到图片。")
        return
    upgraded = await conv.run(SupplyUrgentEvidence("photo", message.event_key, quiet=True), person, message)
    if upgraded is None and _previous_image_handler is None:
        await conv.reply(person, message, "已收到图片。如需报修，请用文字描述故障。")
