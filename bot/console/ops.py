"""The operators' view `/console/ops/` (issue 22; docs/console-admin.md): outbox deliveries per platform and
state with the failed ones and their errors, webhook deliveries that failed, pending timers by kind and
how late they are.

Who: admins see everything and may retry. Supervisors see the counts only (per channel and state, the
timers by kind): the rows carry message texts and recipients of every store, beyond a supervisor's
scope, and retrying is an admin's act like `中枢 重推`. Everyone else: an audited 403.

    GET  /console/ops/                              the view
    POST /console/ops/outbox/{id}/retry             one delivery due again now (fresh retry budget)
    POST /console/ops/outbox/channel/{channel}/retry   every dead delivery of a channel
    POST /console/ops/webhooks/{id}/redeliver       `中枢 重推 ID` (SqlWebhookStore.redeliver)

Each retry is CSRF-checked, wakes the dispatcher at once and is audited ("console_ops_retry").
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot.console.admin_web import render, runtime_of, see_other
from bot.console.auth import StaffSession, posted_form, staff
from bot.console.ops_queries import STATE_LABELS, OpsQueries
from core.model import Role
from storage.webhook_store import SqlWebhookStore

OPS_ROOT = "/console/ops/"
AUDIT_KIND = "console_ops_retry"


def _queries(request: web.Request) -> OpsQueries:
    return OpsQueries(runtime_of(request).sessions)


async def view(request: web.Request) -> web.Response:
    session = await staff(request, Role.ADMIN, Role.SUPERVISOR)
    runtime = runtime_of(request)
    queries = _queries(request)
    now = runtime.clock.now()
    full = session.person.role is Role.ADMIN
    counts = await queries.outbox_counts()
    channels = sorted({c.channel for c in counts} | set(runtime.channels))
    table = {(c.channel, c.state): c for c in counts}
    return render(request, session, "console/ops.html", full=full, channels=channels, counts=table,
                  states=("pending", "sending", "dead"), state_labels=STATE_LABELS,
                  failed=await queries.failed_deliveries(now) if full else [],
                  webhook_counts=await queries.webhook_counts(),
                  webhooks=await queries.failed_webhooks() if full else [],
                  timers=await queries.timer_kinds(now), late=await queries.late_timers(now) if full else [],
                  delivering=sorted(runtime.dispatcher.senders), notice=request.query.get("done", ""),
                  duration=_duration)


def _duration(value: Any) -> str:
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}天{hours}小时"
    if hours:
        return f"{hours}小时{minutes}分"
    return f"{minutes}分{seconds}秒" if minutes else f"{seconds}秒"


async def _audit(request: web.Request, session: StaffSession, payload: dict[str, Any]) -> None:
    runtime = runtime_of(request)
    async with runtime.uow() as uow:
        await uow.append_audit(kind=AUDIT_KIND, actor_id=session.person.id, at=runtime.clock.now(), payload=payload,
                               ticket_number=None)
        await uow.commit()


def _done(message: str) -> web.Response:
    return see_other(f"{OPS_ROOT}?done={quote(message)}")


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise web.HTTPBadRequest(text="id: 应为数字")
    return int(raw)


async def retry_delivery(request: web.Request) -> web.StreamResponse:
    session = await staff(request, Role.ADMIN)
    await posted_form(request, session)
    outbox_id = _id(request)
    runtime = runtime_of(request)
    before = await _queries(request).retry_delivery(outbox_id, runtime.clock.now())
    if before is None:
        raise web.HTTPConflict(text=f"投递 {outbox_id} 不存在、正在发送或已送达，无法重试。")
    await _audit(request, session, {"what": "outbox", "id": outbox_id, "before": before})
    runtime.dispatcher.wake.set()
    return _done(f"已重试投递 {outbox_id}")


async def retry_channel(request: web.Request) -> web.StreamResponse:
    session = await staff(request, Role.ADMIN)
    await posted_form(request, session)
    channel = request.match_info["channel"][:32]
    runtime = runtime_of(request)
    count = await _queries(request).retry_channel(channel, runtime.clock.now())
    await _audit(request, session, {"what": "outbox_channel", "channel": channel, "count": count})
    runtime.dispatcher.wake.set()
    return _done(f"已重试 {channel} 的 {count} 条失败投递")


async def redeliver_webhook(request: web.Request) -> web.StreamResponse:
    session = await staff(request, Role.ADMIN)
    await posted_form(request, session)
    delivery_id = _id(request)
    runtime = runtime_of(request)
    store = SqlWebhookStore(runtime.sessions, runtime.clock)
    if not await store.delivery_exists(delivery_id):
        raise web.HTTPNotFound(text=f"没有编号为 {delivery_id} 的推送。")
    if not await store.redeliver(delivery_id):
        raise web.HTTPConflict(text=f"推送 {delivery_id} 正在发送中，请稍后再试。")
    await _audit(request, session, {"what": "webhook", "id": delivery_id})
    runtime.webhooks.wake.set()
    return _done(f"已重推推送 {delivery_id}")


async def bare(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(OPS_ROOT)


def add_routes(app: web.Application) -> None:
    app.router.add_get(OPS_ROOT.rstrip("/"), bare)
    app.router.add_get(OPS_ROOT, view)
    app.router.add_post(OPS_ROOT + "outbox/{id}/retry", retry_delivery)
    app.router.add_post(OPS_ROOT + "outbox/channel/{channel}/retry", retry_channel)
    app.router.add_post(OPS_ROOT + "webhooks/{id}/redeliver", redeliver_webhook)
