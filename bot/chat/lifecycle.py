"""Chat commands and media handlers of the work-order lifecycle (technicians, customers, warehouse, QC).

Grammar (a ticket number is optional when the technician has exactly one active ticket):

    签到 [工单号]                      check in (needs a shared location + a photo, any order)
    开始 | 开始检修 | 开工 [工单号]      start work; the SOP card follows
    <图片>                             a photo for the current ticket (check-in or work evidence)
    <位置>                             position (technicians) / site of the latest open ticket (customers)
    完工 [工单号]                      finish (≥ 3 photos since start by default)
    选择 <工单号>                      the ticket that photos and locations go to
    等待备件 [工单号] <配件说明>         wait for parts (ticket frozen; warehouse gets a to-do)
    备件进度 [工单号] <说明>            update on the parts (restarts the 48 h clock)
    备件到位 [工单号]                   parts arrived (warehouse, technician, supervisor)
    方案 [工单号] <内容>                a repair plan the customer confirms
    同意方案 [工单号] | 不同意方案 [工单号] [原因]     the customer's answer
    质检通过 <工单号> | 质检不通过 <工单号> <原因>      quality check
    仍未修好 [工单号] [说明]            the customer: back to work / reopen within the rework window
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import and_, or_, select
from sqlmodel import col

from bot.chat.conversation import TICKET_NUMBER, Conversation, HelpLine, Incoming, inbound_handler, text_command
from bot.chat.report_reads import Execute
from bot.chat.reports import report_section
from bot.photo_store import PhotoStore, decode_base64_image
from core.commands import AddPhoto, ReportPosition
from core.errors import DeliveryError, InvalidInput
from core.inbound import InboundKind, InboundMessage
from core.lifecycle.parts import PartsProgress, PartsReady, RequestParts
from core.lifecycle.rework import REPEAT_WINDOW_DAYS, ReportStillBroken, first_time_fix
from core.lifecycle.work import CheckIn, Complete, PlanDecision, ProposePlan, QcDecision, SelectTicket, StartWork
from core.model import Person, Role, Ticket, TicketStatus
from core.reports.metrics import Period
from storage.tables import TicketRow

log = logging.getLogger(__name__)
TECH = {Role.TECHNICIAN}
PARTS_PEOPLE = {Role.TECHNICIAN, Role.WAREHOUSE, Role.SUPERVISOR, Role.ADMIN}
QC_PEOPLE = {Role.QUALITY, Role.SUPERVISOR, Role.ADMIN}


def split_number(args: list[str]) -> tuple[str | None, str]:
    """An optional leading ticket number, and the rest as text."""
    if args and TICKET_NUMBER.fullmatch(args[0]):
        return args[0].upper(), " ".join(args[1:])
    return None, " ".join(args)


def photo_store(conv: Conversation) -> PhotoStore:
    store = conv.extra.get("photo_store")
    if store is None:
        store = PhotoStore(conv.extra["runtime"].settings.data_dir)
        conv.extra["photo_store"] = store
    return store


async def _image_bytes(conv: Conversation, message: InboundMessage) -> bytes:
    if message.image_b64:
        return decode_base64_image(message.image_b64)
    if message.media_ref:
        sender = conv.extra["runtime"].dispatcher.senders.get(message.platform)
        if sender is None:
            raise InvalidInput("暂时无法下载这张图片，请稍后重新发送。")
        try:
            return await sender.fetch_media(message.media_ref)
        except DeliveryError as error:
            log.warning("fetch_media %s failed: %s", message.platform, error.reason)
            raise InvalidInput("图片下载失败，请稍后重新发送。") from error
    raise InvalidInput("没有收到图片内容，请重新发送。")


@inbound_handler(InboundKind.IMAGE)
async def on_image(conv: Conversation, person: Person, message: InboundMessage) -> None:
    store = photo_store(conv)
    staged = await store.stage(await _image_bytes(conv, message))
    try:
        await conv.run(AddPhoto(staged.sha256, staged.relative_path, staged.size, width=staged.width,
                                height=staged.height), person, message)
    except BaseException:
        await store.discard(staged)
        raise
    await store.keep(staged)


@inbound_handler(InboundKind.LOCATION)
async def on_location(conv: Conversation, person: Person, message: InboundMessage) -> None:
    if message.lat is None or message.lng is None or not (-90 <= message.lat <= 90 and -180 <= message.lng <= 180):
        raise InvalidInput("位置信息不完整，请重新共享位置。")
    await conv.run(ReportPosition(message.lat, message.lng), person, message)


@text_command("签到", roles=TECH, usage="签到 [工单号]", summary="到场签到（共享位置 + 一张现场照片，顺序不限）")
async def _check_in(conv: Conversation, inc: Incoming) -> None:
    number, _rest = split_number(inc.args)
    await conv.run(CheckIn(number), inc.person, inc.message)


@text_command("开始", "开始检修", "开工", roles=TECH, usage="开始 [工单号]", summary="开始检修（推送 SOP）")
async def _start(conv: Conversation, inc: Incoming) -> None:
    number, _rest = split_number(inc.args)
    await conv.run(StartWork(number), inc.person, inc.message)


@text_command("完工", roles=TECH, usage="完工 [工单号]", summary="完工（需检修照片），请客户签字",
              help=(HelpLine("<图片>", "上传现场照片或检修照片（记到当前工单）"),))
async def _complete(conv: Conversation, inc: Incoming) -> None:
    number, _rest = split_number(inc.args)
    await conv.run(Complete(number), inc.person, inc.message)


@text_command("选择", roles=TECH, usage="选择 工单号", summary="选择照片和位置记到哪张工单")
async def _select(conv: Conversation, inc: Incoming) -> None:
    number, _rest = split_number(inc.args)
    if number is None:
        raise InvalidInput("请写上工单号，例如「选择 GD-20260101-0001」。")
    await conv.run(SelectTicket(number), inc.person, inc.message)


@text_command("等待备件", roles=TECH, usage="等待备件 [工单号] 配件说明", summary="等待备件（冻结工单，通知仓库）")
async def _wait_parts(conv: Conversation, inc: Incoming) -> None:
    number, note = split_number(inc.args)
    await conv.run(RequestParts(note, number), inc.person, inc.message)


@text_command("备件进度", roles=PARTS_PEOPLE, usage="备件进度 [工单号] 说明", summary="更新备件进度")
async def _parts_progress(conv: Conversation, inc: Incoming) -> None:
    number, note = split_number(inc.args)
    await conv.run(PartsProgress(note, number), inc.person, inc.message)


@text_command("备件到位", roles=PARTS_PEOPLE, usage="备件到位 [工单号]", summary="备件到位，恢复检修")
async def _parts_ready(conv: Conversation, inc: Incoming) -> None:
    number, _rest = split_number(inc.args)
    await conv.run(PartsReady(number), inc.person, inc.message)


@text_command("方案", roles=TECH, usage="方案 [工单号] 内容", summary="提交维修方案给客户确认")
async def _plan(conv: Conversation, inc: Incoming) -> None:
    number, text = split_number(inc.args)
    await conv.run(ProposePlan(text, number), inc.person, inc.message)


@text_command("同意方案", "不同意方案", roles={Role.CUSTOMER}, usage="同意方案｜不同意方案 [原因]",
              summary="答复技师提交的维修方案")
async def _plan_answer(conv: Conversation, inc: Incoming) -> None:
    number, reason = split_number(inc.args)
    approve = inc.text.startswith("同意方案")
    await conv.run(PlanDecision(approve, number, reason), inc.person, inc.message)


@text_command("质检通过", "质检不通过", roles=QC_PEOPLE, usage="质检通过 工单号｜质检不通过 工单号 原因",
              summary="质检结论")
async def _qc(conv: Conversation, inc: Incoming) -> None:
    number, reason = split_number(inc.args)
    if number is None:
        raise InvalidInput("请写上工单号，例如「质检通过 GD-20260101-0001」。")
    await conv.run(QcDecision(number, inc.text.startswith("质检通过"), reason), inc.person, inc.message)


@text_command("仍未修好", "没修好", "还没修好", roles={Role.CUSTOMER}, usage="仍未修好 [工单号] [说明]",
              summary="问题仍未解决：退回技师返修（结案后在返修期内可重开）")
async def _still_broken(conv: Conversation, inc: Incoming) -> None:
    number, reason = split_number(inc.args)
    await conv.run(ReportStillBroken(number, reason), inc.person, inc.message)


@report_section
def first_time_fix_section(execute: Execute, period: Period, _tickets: Sequence[Ticket]) -> list[str]:
    """报表's first-time-fix line: tickets closed in the period, and those that came back within 30 days.
    Runs in the report job (bot/chat/reports.py), on the columns it needs; `closed_at` and `created_at`
    are indexed, so only the window's tickets are read."""
    window = timedelta(days=REPEAT_WINDOW_DAYS)
    statement = _FTF_COLUMNS.where(or_(
        and_(col(TicketRow.closed_at) >= period.start - window, col(TicketRow.closed_at) < period.end),
        and_(col(TicketRow.created_at) >= period.start, col(TicketRow.created_at) < period.end + window)))
    tickets = [Ticket(number=r.number, customer_id=r.customer_id, subject=r.subject, description="",
                      category=r.category, status=TicketStatus(r.status), created_at=r.created_at,
                      updated_at=r.created_at, closed_at=r.closed_at, asset_id=r.asset_id,
                      data={k: v for k, v in (("rework", r.rework), ("masterdata", r.masterdata)) if v})
               for r in execute(statement)]
    return [first_time_fix(tickets, period.start, period.end).text()]


# What first_time_fix and asset_key read of a ticket, not its whole data (a JSON parse per ticket).
_DATA = col(TicketRow.data)
_FTF_COLUMNS = select(col(TicketRow.number), col(TicketRow.customer_id), col(TicketRow.subject),
                      col(TicketRow.category), col(TicketRow.status), col(TicketRow.created_at),
                      col(TicketRow.closed_at), col(TicketRow.asset_id), _DATA["rework"].label("rework"),
                      _DATA["masterdata"].label("masterdata"))
