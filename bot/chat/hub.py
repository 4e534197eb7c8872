"""Chat commands of the work-order hub (issue 23): `中枢 状态` and `中枢 重推 …`.

- `中枢 状态` (supervisors, admins): per connected system the webhook deliveries of the last 7 days
  (成功 / 待投 / 失败), the success rate of the attempts, the last error, and the anomalies TOP5
  (a subscription whose deliveries have been failing since a time; dead-lettered deliveries).
- `中枢 重推 ID` / `中枢 重推 失败 [起始时间]` (admins only): send one delivery again, or every
  failed one since a time (default: the last 7 days). Anyone else is refused politely and the
  attempt is audited (core/audit/refusals.py, through the conversation's runner).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.chat.conversation import Conversation, HelpLine, Incoming, text_command
from core.errors import InvalidInput, NotAllowed
from core.model import Role
from storage.webhook_store import SqlWebhookStore

WINDOW = timedelta(days=7)
TOP = 5
USAGE = "用法：中枢 状态｜中枢 重推 投递编号｜中枢 重推 失败 [起始时间，如 2026-12-06 或 2026-12-06T08:00]"
REDELIVER_REFUSAL = "抱歉，中枢重推只有系统管理员可以使用。如需重推失败的数据，请联系系统管理员。"


def _store(conv: Conversation) -> SqlWebhookStore:
    runtime = conv.extra["runtime"]
    return SqlWebhookStore(runtime.sessions, conv.service.clock)


def _wake(conv: Conversation) -> None:
    webhooks = getattr(conv.extra["runtime"], "webhooks", None)
    if webhooks is not None:
        webhooks.wake.set()


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%m-%d %H:%M")


RECONCILE_KIND = "hub_reconcile"  # a system's report of the refs it created (POST /api/v1/hub/reconcile)


async def not_received(uow: Any) -> dict[str, dict[str, Any]]:
    """Per system, its newest reconcile report reduced to the refs still unknown now ("created in
    their system but never received here"): a ref that arrived since no longer counts."""
    newest: dict[str, dict[str, Any]] = {}
    for event in await uow.hub().latest_audit(RECONCILE_KIND):
        payload = event["payload"]
        newest.setdefault(str(payload.get("system")), {**payload, "at": event["at"]})
    out: dict[str, dict[str, Any]] = {}
    for system, report in newest.items():
        kept = list(report.get("unknown", []))
        arrived = await uow.hub().known_refs(system, kept) if kept else set()
        count = int(report.get("unknown_count", 0)) - len(arrived)
        if count > 0:
            out[system] = {"count": count, "refs": [r for r in kept if r not in arrived][:10],
                           "reported_at": report["at"]}
    return out


def render_health(systems: list[dict[str, Any]], zone: ZoneInfo,
                  missing: dict[str, dict[str, Any]] | None = None) -> str:
    missing = missing or {}
    if not systems and not missing:
        return "中枢同步状态：还没有对接的系统（用 ticketbot webhook add 添加订阅）。"
    lines = ["中枢同步状态（近 7 天的推送）："]
    anomalies: list[tuple[datetime, str]] = []
    for system in systems:
        rate = system["success_rate"]
        rate_text = f"{rate * 100:.1f}%（{system['attempts']} 次尝试）" if rate is not None else "暂无推送"
        line = (f"· {system['client']}：成功率 {rate_text}｜成功 {system['ok']} · 待投 {system['pending']} · "
                f"失败 {system['failed']}")
        if system["last_error"]:
            line += f"｜最近错误：{system['last_error'][:60]}（{_local(system['last_error_at'], zone)}）"
        lines.append(line)
        for failing in system.get("failing", []):
            since, error = failing["since"], (failing["last_error"] or "")[:60]
            anomalies.append((since, f"{system['client']} 推送失败（自 {_local(since, zone)} 起，"
                                     f"订阅 {failing['subscription']}）：{error}"))
        if system["failed"]:
            anomalies.append((system["last_error_at"] or datetime.max.replace(tzinfo=zone),
                              f"{system['client']} 有 {system['failed']} 条推送已进入死信，可「中枢 重推 失败」"))
    for client, report in sorted(missing.items()):
        refs = "、".join(report["refs"][:3]) + ("等" if report["count"] > 3 else "")
        anomalies.append((report["reported_at"], f"{client} 创建但本系统未收到 {report['count']} 张工单"
                                                 f"（{_local(report['reported_at'], zone)} 对账）：{refs}"))
    if anomalies:
        lines.append("异常 TOP5：")
        anomalies.sort(key=lambda item: item[0])
        lines.extend(f"{i}. {text}" for i, (_, text) in enumerate(anomalies[:TOP], start=1))
    else:
        lines.append("没有异常。")
    return "\n".join(lines)


def parse_since(words: list[str], now: datetime, zone: ZoneInfo) -> datetime:
    if not words:
        return now - WINDOW
    text = " ".join(words).strip().replace(" ", "T", 1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidInput(f"看不懂起始时间「{' '.join(words)}」。{USAGE}") from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


@text_command("中枢", roles={Role.SUPERVISOR, Role.ADMIN}, usage="中枢 状态",
              summary="对接系统的同步成功率、待投/失败、最近错误与异常 TOP5",
              help=(HelpLine("中枢 重推 投递编号｜中枢 重推 失败 [起始时间]", "重推一条或全部失败的推送",
                             frozenset({Role.ADMIN})),))
async def _hub(conv: Conversation, inc: Incoming) -> None:
    zone: ZoneInfo = conv.service.config.timezone
    now = conv.service.clock.now()
    action = inc.args[0] if inc.args else "状态"
    if action == "状态":
        async with conv.extra["runtime"].uow() as uow:
            missing = await not_received(uow)
        await conv.reply(inc.person, inc.message,
                         render_health(await _store(conv).health(now - WINDOW), zone, missing))
        return
    if action != "重推":
        raise InvalidInput(f"看不懂「{inc.text}」。{USAGE}")
    if inc.person.role is not Role.ADMIN:
        raise NotAllowed(REDELIVER_REFUSAL, reason="hub_redeliver_admin_only")
    target = inc.args[1:]
    if not target:
        raise InvalidInput(f"请说明重推哪一条。{USAGE}")
    store = _store(conv)
    if target[0] == "失败":
        since = parse_since(target[1:], now, zone)
        count = await store.redeliver_failed(since)
        _wake(conv)
        await conv.reply(inc.person, inc.message, f"已重推 {count} 条失败的推送（{_local(since, zone)} 以来）。"
                         if count else f"{_local(since, zone)} 以来没有失败的推送。")
        return
    if not target[0].isdigit():
        raise InvalidInput(f"投递编号应为数字（见 ticketbot webhook log）。{USAGE}")
    delivery = int(target[0])
    if not await store.delivery_exists(delivery):
        raise InvalidInput(f"没有编号为 {delivery} 的推送。")
    if not await store.redeliver(delivery):
        raise InvalidInput(f"推送 {delivery} 正在发送中，请稍后再试。")
    _wake(conv)
    await conv.reply(inc.person, inc.message, f"已重推推送 {delivery}。")
