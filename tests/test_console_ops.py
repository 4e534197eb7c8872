"""The operators' view /console/ops/: failed deliveries with their errors, the retry button (CSRF-checked,
admins only) that the dispatcher then delivers against a fake WeCom speaking the real protocol, webhook
redelivery, and timers by kind with their lateness."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlmodel import col

from bot.console.ops_queries import OpsQueries
from storage.database import Sessions
from storage.tables import OutboxRow, TimerRowTable, WebhookDeliveryRow, WebhookSubscriptionRow
from storage.unit_of_work import SqlUnitOfWork
from tests.console_support import sign_in
from tests.fakes.wecom_server import FakeWeCom
from tests.test_console_admin_support import audit_events, console, csrf, inputs
from tests.test_e2e_wecom import fake, start_world  # noqa: F401  (the fake WeCom fixture)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def _outbox_row(sessions: Sessions, outbox_id: int) -> OutboxRow:
    async with sessions() as session:
        row = await session.get(OutboxRow, outbox_id)
        assert row is not None
        return row


async def _wait_for(sessions: Sessions, outbox_id: int, status: str, timeout_s: float = 15) -> OutboxRow:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        row = await _outbox_row(sessions, outbox_id)
        if row.status == status or asyncio.get_running_loop().time() > deadline:
            return row
        await asyncio.sleep(0.05)


async def test_a_failed_delivery_shows_its_error_and_retry_gets_it_delivered(database_url: str, tmp_path: Path,
                                                                            fake: FakeWeCom) -> None:  # noqa: F811
    world, client = await start_world(database_url, tmp_path, fake)
    try:
        runtime = world.runtime
        await world.link("admin", "lisi")
        await sign_in(client, runtime, "admin")
        fake.refuse_text_containing = "派单规则"  # WeCom refuses this text for good (errcode 40008)

        # An admin saves the dispatch weights in the console; the chat's confirmation goes to WeCom.
        page = await (await client.get("/console/admin/dispatch")).text()
        form = {**inputs(page, "dispatch-form"), "weight.qualification": "50", "weight.distance": "20"}
        preview = await (await client.post("/console/admin/dispatch/preview", data=form)).text()
        saved = await client.post("/console/admin/dispatch/save", data=inputs(preview, "confirm-form"),
                                  allow_redirects=False)
        assert saved.status == 303
        async with runtime.sessions() as session:
            outbox_id = (await session.execute(select(col(OutboxRow.id)).where(
                col(OutboxRow.recipient_id) == "admin", col(OutboxRow.channel) == "wecom")
                .order_by(col(OutboxRow.id).desc()))).scalars().first()
        assert outbox_id is not None
        dead = await _wait_for(runtime.sessions, outbox_id, "dead")
        assert dead.status == "dead" and "40008" in (dead.error or "")

        ops = await client.get("/console/ops/")
        text = await ops.text()
        assert ops.status == 200
        row = text[text.index(f'id="delivery-{outbox_id}"'):]
        row = row[:row.index("</tr>")]
        assert "wecom" in row and "40008" in row and "派单规则" in row and "失败" in row
        counts = text[text.index('id="outbox-counts"'):text.index("</table>", text.index('id="outbox-counts"'))]
        assert re.search(r"<td>wecom</td>.*?bad\">1</td>", counts, re.S)

        # Without the CSRF token: refused, nothing changes.
        refused = await client.post(f"/console/ops/outbox/{outbox_id}/retry", data={})
        assert refused.status == 403
        assert (await _outbox_row(runtime.sessions, outbox_id)).status == "dead"

        fake.refuse_text_containing = None  # the cause is fixed
        retried = await client.post(f"/console/ops/outbox/{outbox_id}/retry", data={"csrf_token": csrf(text)},
                                    allow_redirects=False)
        assert retried.status == 303 and retried.headers["Location"].startswith("/console/ops/?done=")
        sent = await _wait_for(runtime.sessions, outbox_id, "sent")
        assert sent.status == "sent" and sent.error is None
        assert any("派单规则" in str(body) for body in fake.delivered)
        events = await audit_events(runtime, "console_ops_retry")
        assert events[-1].actor_id == "admin"
        assert events[-1].payload["id"] == outbox_id and events[-1].payload["before"]["status"] == "dead"
        assert events[-1].payload["before"]["error"].startswith(dead.error[:20])

        # A delivery that was sent cannot be "retried" into a duplicate.
        again = await client.post(f"/console/ops/outbox/{outbox_id}/retry", data={"csrf_token": csrf(text)})
        assert again.status == 409
        assert (await _outbox_row(runtime.sessions, outbox_id)).status == "sent"
    finally:
        await client.close()


async def test_supervisors_see_the_counts_only_and_may_not_retry(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path, "sup-li") as (client, runtime):
        async with runtime.sessions() as session, session.begin():
            row = OutboxRow(recipient_id="cust-demo", channel="wecom", payload={"text": "您的工单已受理"},
                            reply_context={}, status="dead", attempts=12, created_at=NOW, next_attempt_at=NOW,
                            error="HTTP 500 from WeCom")
            session.add(row)
        resp = await client.get("/console/ops/")
        text = await resp.text()
        assert resp.status == 200 and 'id="outbox-counts"' in text and 'id="timers-title"' in text
        assert 'id="failed-deliveries"' not in text and "您的工单已受理" not in text and "HTTP 500" not in text
        refused = await client.post(f"/console/ops/outbox/{row.id}/retry", data={"csrf_token": csrf(text)})
        assert refused.status == 403
        assert (await _outbox_row(runtime.sessions, int(row.id or 0))).status == "dead"
        assert any(e.actor_id == "sup-li" for e in await audit_events(runtime, "console_forbidden"))


async def test_quality_staff_get_a_403(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path, "qa-sun") as (client, _runtime):
        assert (await client.get("/console/ops/")).status == 403


async def test_a_failed_webhook_shows_and_is_redelivered(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path) as (client, runtime):
        async with runtime.sessions() as session, session.begin():
            sub = WebhookSubscriptionRow(client="erp", url="http://127.0.0.1:9/hook", secret="s" * 32,
                                         events=["ticket.created"], created_at=NOW)
            session.add(sub)
            await session.flush()
            delivery = WebhookDeliveryRow(subscription_id=int(sub.id or 0), event_id="e" * 36,
                                          event_type="ticket.created", ticket_number="GD-1", body="{}",
                                          status="dead", attempts=9, created_at=NOW, next_attempt_at=NOW,
                                          give_up_at=NOW, last_status=502, last_error="502 Bad Gateway")
            session.add(delivery)
        text = await (await client.get("/console/ops/")).text()
        table = text[text.index('id="failed-webhooks"'):]
        assert "erp" in table and "ticket.created" in table and "502 Bad Gateway" in table
        resp = await client.post(f"/console/ops/webhooks/{delivery.id}/redeliver", data={"csrf_token": csrf(text)},
                                 allow_redirects=False)
        assert resp.status == 303
        async with runtime.sessions() as session:
            again = await session.get(WebhookDeliveryRow, delivery.id)
            assert again is not None and again.status in {"pending", "sending"}  # re-armed (maybe tried once more)
            assert again.give_up_at.replace(tzinfo=again.give_up_at.tzinfo or UTC) > NOW + timedelta(days=1)
        events = await audit_events(runtime, "console_ops_retry")
        assert events[-1].payload == {"what": "webhook", "id": delivery.id}
        missing = await client.post("/console/ops/webhooks/999999/redeliver", data={"csrf_token": csrf(text)})
        assert missing.status == 404


async def test_outbox_and_timer_queries(db_sessions: Sessions) -> None:
    """The view's numbers on both databases: counts per channel and state, the failing rows, the retry's
    reset, and timers per kind with how late the oldest is."""
    rows = [("wecom", "dead", 12, "40008 invalid message content"), ("wecom", "pending", 3, "HTTP 500"),
            ("wecom", "pending", 0, None), ("feishu", "sent", 1, None), ("feishu", "sending", 1, "timeout"),
            ("feishu", "sending", 1, None)]  # the last: a first attempt in flight, not a failure
    async with db_sessions() as session, session.begin():
        for i, (channel, status, attempts, error) in enumerate(rows):
            session.add(OutboxRow(recipient_id=f"p{i}", channel=channel, payload={"text": f"消息 {i}"},
                                  reply_context={}, status=status, attempts=attempts,
                                  created_at=NOW - timedelta(minutes=10 - i), error=error,
                                  next_attempt_at=NOW + timedelta(minutes=2) if status == "sending" else NOW))
    queries = OpsQueries(db_sessions)
    counts = {(c.channel, c.state): c.count for c in await queries.outbox_counts()}
    assert counts == {("wecom", "dead"): 1, ("wecom", "pending"): 2, ("feishu", "sending"): 2}
    failed = await queries.failed_deliveries(NOW)
    assert [(f.channel, f.state, f.error) for f in failed] == [
        ("feishu", "sending", "timeout"), ("wecom", "pending", "HTTP 500"),
        ("wecom", "dead", "40008 invalid message content")]
    dead = failed[-1]
    assert dead.summary == "消息 0"
    stuck = await queries.failed_deliveries(NOW + timedelta(minutes=3))  # the lease ran out: the sender died
    assert [(f.state, f.error) for f in stuck if f.channel == "feishu"] == [("sending", ""), ("sending", "timeout")]

    later = NOW + timedelta(minutes=5)
    before = await queries.retry_delivery(dead.id, later)
    assert before is not None and before["status"] == "dead" and before["attempts"] == 12
    async with db_sessions() as session:
        row = await session.get(OutboxRow, dead.id)
        assert row is not None and (row.status, row.attempts) == ("pending", 0)
        assert row.next_attempt_at.replace(tzinfo=row.next_attempt_at.tzinfo or UTC) == later
        sending_id = (await session.execute(select(col(OutboxRow.id)).where(col(OutboxRow.status) == "sending"))
                      ).scalars().first()
        sent_id = (await session.execute(select(col(OutboxRow.id)).where(col(OutboxRow.status) == "sent"))
                   ).scalar_one()
    assert await queries.retry_delivery(sending_id, later) is None  # in flight: left alone
    assert await queries.retry_delivery(sent_id, later) is None
    assert await queries.retry_delivery(10**9, later) is None

    async with SqlUnitOfWork(db_sessions) as uow:
        for kind, key, due in (("sla.response", "GD-1", -timedelta(hours=2)),
                               ("sla.response", "GD-2", -timedelta(minutes=5)),
                               ("sla.response", "GD-3", timedelta(hours=1)),
                               ("dispatch.offer", "GD-4", timedelta(minutes=15)),
                               ("dispatch.offer", "GD-5", -timedelta(hours=9))):
            await uow.schedule_timer(kind=kind, ticket_number=key, due_at=NOW + due, payload={})
        await uow.commit()
    async with db_sessions() as session, session.begin():
        fired = (await session.execute(select(TimerRowTable).where(col(TimerRowTable.ticket_key) == "GD-5"))
                 ).scalar_one()
        fired.state = "fired"  # done: not pending any more
    kinds = {k.kind: k for k in await queries.timer_kinds(NOW)}
    assert set(kinds) == {"sla.response", "dispatch.offer"}
    assert (kinds["sla.response"].pending, kinds["sla.response"].overdue) == (3, 2)
    assert kinds["sla.response"].lateness == timedelta(hours=2)
    assert (kinds["dispatch.offer"].pending, kinds["dispatch.offer"].overdue, kinds["dispatch.offer"].lateness) == (
        1, 0, None)
    late = await queries.late_timers(NOW)
    assert [(t.ticket, t.lateness) for t in late] == [("GD-1", timedelta(hours=2)), ("GD-2", timedelta(minutes=5))]
