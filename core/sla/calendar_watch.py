"""Once a day, tell admins when this or next year's official holiday schedule is not known yet.

python-holidays learns each year's State Council notice only with a package release; until an
admin enters the notice (`节假日 设置 …` then `节假日 确认 2027`), business-time deadlines in that
year may be wrong. A durable daily timer (no ticket) carries the check; it is armed lazily by
SLA activity (`ensure_daily_check`) and re-arms itself.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from weakref import WeakKeyDictionary

from core.model import Role, Ticket
from core.service import Context
from core.sla.stored_config import load_calendar
from core.timers import timer_handler

DAILY_CHECK_KIND = "calendar.daily_check"


def next_check_at(ctx: Context, after: datetime) -> datetime:
    zone = ctx.config.timezone
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), time(ctx.config.sla.daily_check_hour), tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), time(ctx.config.sla.daily_check_hour),
                                     tzinfo=zone)
    return candidate.astimezone(after.tzinfo)


# When the daily check is known to be pending, per service (one database): until then every new
# ticket need not read its timer row. Only firing moves it (and re-arms it), so it stays pending at
# least until the due time seen; armed here, it counts once the arming committed.
_pending_until: WeakKeyDictionary[object, datetime] = WeakKeyDictionary()


async def ensure_daily_check(ctx: Context) -> None:
    known = _pending_until.get(ctx.service)
    if known is not None and ctx.now < known:
        return
    timer = await ctx.uow.get_timer(DAILY_CHECK_KIND, None)
    if timer is not None and timer.state == "pending":
        _pending_until[ctx.service] = timer.due_at
        return
    due = next_check_at(ctx, ctx.now)
    await ctx.uow.schedule_timer(kind=DAILY_CHECK_KIND, ticket_number=None, due_at=due, payload={})
    service = ctx.service

    async def armed() -> None:
        _pending_until[service] = due

    await ctx.uow.after_commit(armed)


async def schedule_warning(ctx: Context) -> str | None:
    calendar = await load_calendar(ctx.uow, ctx.config.timezone, ctx.config.sla)
    return calendar.coming_year_warning(ctx.now)


@timer_handler(DAILY_CHECK_KIND)
async def _daily_check(ctx: Context, _ticket: Ticket | None, _payload: dict[str, Any]) -> None:
    warning = await schedule_warning(ctx)
    if warning:
        for admin in await ctx.uow.list_people(Role.ADMIN):
            await ctx.tell(admin.id, f"【节假日安排提醒】\n{warning}\n录入方法：节假日 设置 2027-02-05 休息 春节；"
                                     f"全部录入后发送：节假日 确认 2027")
        await ctx.audit("calendar_warning_sent", {"warning": warning})
    await ctx.uow.schedule_timer(kind=DAILY_CHECK_KIND, ticket_number=None,
                                 due_at=next_check_at(ctx, ctx.now), payload={})
