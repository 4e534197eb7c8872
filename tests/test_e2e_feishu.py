"""Feishu end to end: the real app (build_app, real SQLite/PostgreSQL, inbox, conversation,
outbox, dispatcher) with FEISHU_DOMAIN pointing at a fake Feishu on loopback.

Events are encrypted and signed exactly as Feishu does and POSTed to /feishu/events; what the
bot says arrives at the fake's im/v1/messages (asynchronously: tests poll with a timeout).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col, func, select

from adapters.feishu.crypto import encrypt, signature
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.app import build_app
from core.model import Person, Role, Ticket
from storage.tables import AuditEventRow, InboxRow, OutboxRow, PersonRow, PhotoRow, TicketRow
from tests.conftest import make_settings
from tests.fakes.feishu_server import (
    APP_ID,
    APP_SECRET,
    BOT_OPEN_ID,
    FakeFeishu,
    Sent,
    card_action_event,
    event_envelope,
    eventually,
    message_event,
    push_event,
    signed_event,
)
from tests.test_lifecycle_support import png

KEY = "e2e-encrypt-key"
TOKEN = "e2e-verification-token"
CUSTOMER = "ou_customer_e2e"
CREATED = "已为您创建工单"


class OffsetClock:
    """A clock that ticks with real time, from `start` (default: now), plus jumps the test makes:
    a retry backoff or an SLA deadline falls due without sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self._origin = start or datetime.now(UTC)
        self._began = time.monotonic()
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self._origin + timedelta(seconds=time.monotonic() - self._began) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass
class FeishuEnv:
    client: TestClient
    fake: FakeFeishu
    runtime: Runtime
    clock: OffsetClock

    async def push(self, payload: dict[str, Any], **signing: Any) -> tuple[int, Any]:
        answer = await push_event(self.client, payload, KEY, **signing)
        self.runtime.dispatcher.wake.set()  # deliver at once instead of at the next idle poll
        return answer

    async def say(self, open_id: str, text: str, **event: Any) -> tuple[int, Any]:
        event.setdefault("message_id", f"om_in_{secrets.token_hex(6)}")
        return await self.push(message_event(TOKEN, content={"text": text}, sender_open_id=open_id, **event))

    async def send_image(self, open_id: str, data: bytes) -> tuple[int, Any]:
        """An image message; the bot downloads `data` from the fake's resources endpoint."""
        image_key = f"img_v3_{secrets.token_hex(6)}"
        self.fake.images[image_key] = data
        return await self.push(message_event(TOKEN, message_type="image", content={"image_key": image_key},
                                             sender_open_id=open_id, message_id=f"om_img_{secrets.token_hex(6)}"))

    async def send_location(self, open_id: str, lat: float, lng: float) -> tuple[int, Any]:
        content = {"name": "现场", "latitude": str(lat), "longitude": str(lng)}
        return await self.push(message_event(TOKEN, message_type="location", content=content, sender_open_id=open_id,
                                             message_id=f"om_loc_{secrets.token_hex(6)}"))

    async def press(self, open_id: str, card_message: Sent, action: str,
                    form_value: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Press a button (or submit the form) of a card the fake delivered, as Feishu's client does."""
        [value] = [{"card_id": b["card_id"], "action": b["action"]} for b in card_message.buttons()
                   if b["action"] == action]
        return await self.push(card_action_event(
            TOKEN, value=value, form_value=form_value, operator_open_id=open_id,
            open_message_id=card_message.message_id, callback_token=f"c-{secrets.token_hex(8)}"))

    async def link(self, person_id: str, open_id: str) -> None:
        """Map a directory person to a Feishu open_id and answer them on Feishu."""
        async with self.runtime.uow() as uow:
            person = await uow.get_person(person_id)
            assert person is not None
            await uow.link_identity(person_id, "feishu", open_id)
            person.preferred_channel = "feishu"
            await uow.save_person(person)
            await uow.commit()

    async def advance_to(self, at: datetime) -> None:
        self.clock.advance(max(timedelta(0), at - self.clock.now()))
        self.runtime.timer_engine.wake.set()
        self.runtime.dispatcher.wake.set()

    async def ticket(self, number: str) -> Ticket:
        async with self.runtime.uow() as uow:
            found = await uow.get_ticket(number)
        assert found is not None
        return found

    async def trail(self, number: str) -> list[str]:
        async with self.runtime.uow() as uow:
            return [e.kind for e in await uow.audit_for_ticket(number)]

    async def message_to(self, open_id: str, match: Callable[[Sent], bool], after: int = 0,
                         timeout_s: float = 10.0) -> Sent:
        """The first message to `open_id` (from index `after` on) that matches."""
        def probe() -> Sent | None:
            return next((m for m in self.fake.sent(open_id)[after:] if match(m)), None)

        found: Sent = await eventually(probe, timeout_s, f"a matching message to {open_id}")
        return found

    async def count(self, table: type) -> int:
        async with self.runtime.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(table))).scalar_one())

    async def snapshot(self) -> dict[str, int]:
        """Row counts that bad input must leave alone."""
        return {t.__name__: await self.count(t) for t in (InboxRow, TicketRow, PersonRow, OutboxRow, AuditEventRow)}

    async def tickets(self) -> list[Ticket]:
        async with self.runtime.uow() as uow:
            return await uow.list_tickets()

    async def outbox_rows(self) -> list[OutboxRow]:
        """Outbox rows for Feishu (the demo directory's people are on the local channel)."""
        async with self.runtime.sessions() as session:
            rows = await session.execute(select(OutboxRow).where(col(OutboxRow.channel) == "feishu")
                                         .order_by(col(OutboxRow.id)))
            return list(rows.scalars())

    async def add_person(self, person: Person, open_id: str) -> None:
        """A directory person reachable on Feishu: identities map (feishu, open_id) → person."""
        async with self.runtime.uow() as uow:
            await uow.add_person(person, {"feishu": open_id})
            await uow.commit()

    async def outbox_row(self, row_id: int | None) -> OutboxRow:
        async with self.runtime.sessions() as session:
            row = await session.get(OutboxRow, row_id)
        assert row is not None
        return row

    async def settled_except(self, row_id: int | None, timeout_s: float = 10.0) -> None:
        """Every outbox row but one delivered."""
        async def others_done() -> bool:
            return all(r.status == "sent" for r in await self.outbox_rows() if r.id != row_id)

        await eventually(others_done, timeout_s, "the other outbox rows to be delivered")

    async def settled(self, timeout_s: float = 10.0) -> None:
        """Every inbox row processed and every outbox row delivered (or given up)."""
        async def quiet() -> bool:
            async with self.runtime.sessions() as session:
                busy_in = await session.scalar(select(func.count()).select_from(InboxRow).where(
                    col(InboxRow.status).in_(["pending", "processing"])))
                busy_out = await session.scalar(select(func.count()).select_from(OutboxRow).where(
                    col(OutboxRow.status).in_(["pending", "sending"])))
            return not busy_in and not busy_out

        await eventually(quiet, timeout_s, "inbox and outbox to settle")


def feishu_settings(database_url: str, tmp_path: Path, fake: FakeFeishu, **overrides: Any) -> Settings:
    return make_settings(
        database_url, tmp_path, feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET, feishu_encrypt_key=KEY,
        feishu_verification_token=TOKEN, feishu_domain=fake.url, **overrides)


async def feishu_env(database_url: str, tmp_path: Path, start: datetime | None = None) -> AsyncIterator[FeishuEnv]:
    fake = FakeFeishu()
    await fake.start()
    clock = OffsetClock(start)
    settings = feishu_settings(database_url, tmp_path, fake, playground="off")
    runtime = Runtime(settings, clock=clock)
    try:
        async with TestClient(TestServer(build_app(settings, runtime=runtime))) as client:
            [adapter] = runtime.adapters
            # Learned from /bot/v3/info at start: tells "@bot" from other mentions in groups.
            await eventually(lambda: getattr(adapter, "bot_open_id", "") == BOT_OPEN_ID, what="the bot's open_id")
            yield FeishuEnv(client, fake, runtime, clock)
    finally:
        await fake.close()


@pytest.fixture
async def feishu(database_url: str, tmp_path: Path) -> AsyncIterator[FeishuEnv]:
    async for env in feishu_env(database_url, tmp_path):
        yield env


# --- inbound messages ---


async def test_fault_report_from_an_unknown_open_id_becomes_a_ticket_and_the_reply_arrives(
    feishu: FeishuEnv,
) -> None:
    feishu.fake.hold()  # a stalled Open API must not delay the answer to Feishu
    assert await feishu.say(CUSTOMER, "中控黑屏") == (200, {"msg": "success"})
    assert await feishu.count(InboxRow) == 1  # committed before the answer
    [ticket] = await eventually(feishu.tickets, what="the ticket")
    assert (ticket.description, ticket.category) == ("中控黑屏", "电控类")
    assert feishu.fake.sent() == []
    feishu.fake.release()

    reply = await feishu.message_to(CUSTOMER, lambda m: CREATED in m.text)
    assert f"{CREATED} {ticket.number}" in reply.text
    assert (reply.receive_id_type, reply.msg_type) == ("open_id", "text")
    async with feishu.runtime.uow() as uow:
        person = await uow.person_by_identity("feishu", CUSTOMER)
    assert person is not None and person.id == ticket.customer_id
    assert (person.role, person.preferred_channel) == (Role.CUSTOMER, "feishu")
    await feishu.settled()
    [row] = [r for r in await feishu.outbox_rows() if r.external_id == reply.message_id]
    assert (row.status, row.attempts, row.recipient_id) == ("sent", 1, person.id)
    [create] = [c for c in feishu.fake.calls("POST", "/im/v1/messages") if c.json["uuid"] == f"ticketbot-{row.id}-t"]
    assert create.json["receive_id"] == CUSTOMER  # the uuid lets Feishu dedupe a resend of this row


async def test_a_directory_person_is_found_by_open_id(feishu: FeishuEnv) -> None:
    await feishu.add_person(Person(id="sup-feishu", name="主管 飞书", role=Role.SUPERVISOR,
                                   preferred_channel="feishu"), "ou_supervisor")
    await feishu.say(CUSTOMER, "底盘有异响")
    [ticket] = await eventually(feishu.tickets, what="the ticket")
    people = await feishu.count(PersonRow)

    await feishu.say("ou_supervisor", "进度")
    listing = await feishu.message_to("ou_supervisor", lambda m: "工单" in m.text)
    assert ticket.number in listing.text  # a supervisor sees every ticket; a customer would see none
    assert await feishu.count(PersonRow) == people  # no stranger was created for this open_id


async def test_group_message_counts_only_when_the_bot_is_mentioned(feishu: FeishuEnv) -> None:
    someone = {"key": "@_user_1", "id": {"open_id": "ou_colleague"}, "name": "同事"}
    bot = {"key": "@_user_2", "id": {"open_id": BOT_OPEN_ID}, "name": "工单助手"}
    group = {"chat_type": "group", "chat_id": "oc_workshop"}
    assert await feishu.say(CUSTOMER, "@_user_1 中控黑屏了", mentions=[someone], **group) == (200, {"msg": "success"})
    assert await feishu.say(CUSTOMER, "中控又黑屏了", **group) == (200, {"msg": "success"})
    await feishu.settled()
    assert await feishu.count(InboxRow) == 0 and await feishu.tickets() == []

    await feishu.say(CUSTOMER, "@_user_2 中控黑屏了", mentions=[bot], message_id="om_in_group_ask", **group)
    [ticket] = await eventually(feishu.tickets, what="the ticket")
    assert ticket.description == "中控黑屏了"  # the bot's mention is stripped
    # Answered where it was asked: a quoted reply to the message in the group ...
    reply = await feishu.message_to("reply:om_in_group_ask", lambda m: CREATED in m.text)
    assert ticket.number in reply.text
    calls = feishu.fake.calls("POST", "/im/v1/messages/om_in_group_ask/reply")
    assert calls and all(c.json["uuid"].startswith("ticketbot-") and "receive_id" not in c.json for c in calls)
    assert feishu.fake.sent(CUSTOMER) == []  # nothing of this answer went to the person alone
    # Later news about the ticket, from other people's actions, reaches the person alone.
    await feishu.add_person(Person(id="sup-feishu", name="主管 飞书", role=Role.SUPERVISOR,
                                   preferred_channel="feishu"), "ou_supervisor")
    await feishu.say("ou_supervisor", f"转派 {ticket.number} tech-wang 客户指定")
    update = await feishu.message_to(CUSTOMER, lambda m: ticket.number in m.text)
    assert update.receive_id_type == "open_id" and "改派" in update.text


async def test_duplicate_event_id_makes_one_ticket(feishu: FeishuEnv) -> None:
    payload = message_event(TOKEN, content={"text": "中控黑屏"}, sender_open_id=CUSTOMER, event_id="ev-repush")
    assert await feishu.push(payload) == (200, {"msg": "success"})
    assert await feishu.push(payload) == (200, {"msg": "success"})  # Feishu's re-push: newly signed
    await feishu.message_to(CUSTOMER, lambda m: CREATED in m.text)
    await feishu.settled()
    assert len(await feishu.tickets()) == 1
    assert await feishu.count(InboxRow) == 1
    assert len([m for m in feishu.fake.sent(CUSTOMER) if CREATED in m.text]) == 1


async def test_image_message_is_downloaded_with_fetch_media_and_attached(feishu: FeishuEnv) -> None:
    await feishu.say(CUSTOMER, "中控黑屏")
    reply = await feishu.message_to(CUSTOMER, lambda m: CREATED in m.text)
    photo = png("dashboard")  # a real image: the photo store decodes it
    await feishu.send_image(CUSTOMER, photo)
    attached = await feishu.message_to(CUSTOMER, lambda m: "照片已附在工单" in m.text)
    [ticket] = await feishu.tickets()
    assert ticket.number in attached.text and ticket.number in reply.text
    [download] = feishu.fake.calls("GET", "/resources/")
    assert download.query == {"type": "image"} and download.path.startswith("/open-apis/im/v1/messages/om_img_")
    async with feishu.runtime.sessions() as session:
        [row] = (await session.execute(select(PhotoRow))).scalars().all()
    assert (row.ticket_number, row.sha256) == (ticket.number, hashlib.sha256(photo).hexdigest())


async def test_failed_image_download_is_answered_and_stores_nothing(feishu: FeishuEnv) -> None:
    await feishu.say(CUSTOMER, "中控黑屏")
    await feishu.message_to(CUSTOMER, lambda m: CREATED in m.text)
    feishu.fake.fail_next(404, 234003, "file not found", path_prefix="/open-apis/im/v1/messages/om_img_")
    await feishu.send_image(CUSTOMER, b"\x89PNG\r\n\x1a\nlost")
    answer = await feishu.message_to(CUSTOMER, lambda m: "图片" in m.text)
    assert answer.text == "图片下载失败，请稍后重新发送。"
    assert await feishu.count(PhotoRow) == 0


# --- bad input: refused, nothing stored, nothing sent ---


async def _post_raw(env: FeishuEnv, body: bytes, headers: dict[str, str]) -> int:
    resp = await env.client.post("/feishu/events", data=body, headers=headers)
    resp.release()
    return resp.status


async def test_wrong_signature_is_refused_and_changes_nothing(feishu: FeishuEnv) -> None:
    before = await feishu.snapshot()
    body, headers = signed_event(message_event(TOKEN, content={"text": "中控黑屏"}), KEY)
    headers["X-Lark-Signature"] = signature(headers["X-Lark-Request-Timestamp"], "forged", KEY, body)
    assert await _post_raw(feishu, body, headers) == 401
    body, headers = signed_event(message_event(TOKEN, content={"text": "中控黑屏"}), "a guessed key")
    assert await _post_raw(feishu, body, headers) == 401
    assert await feishu.snapshot() == before and feishu.fake.sent() == []


async def test_wrong_verification_token_is_refused(feishu: FeishuEnv) -> None:
    before = await feishu.snapshot()
    status, _ = await feishu.push(message_event("stolen-token", content={"text": "中控黑屏"}))
    assert status == 401
    assert await feishu.snapshot() == before


async def test_stale_timestamp_is_refused(feishu: FeishuEnv) -> None:
    before = await feishu.snapshot()
    replayed = message_event(TOKEN, content={"text": "中控黑屏"})
    status, answer = await feishu.push(replayed, timestamp=str(int(time.time()) - 3600))
    assert (status, answer) == (401, {"msg": "请求已过期"})
    assert await feishu.snapshot() == before


async def test_undecryptable_body_is_a_400(feishu: FeishuEnv) -> None:
    before = await feishu.snapshot()
    for encrypted in ("%%not-base64%%", encrypt(json.dumps(message_event(TOKEN)), "another key")):
        body = json.dumps({"encrypt": encrypted}).encode()
        ts, nonce = str(int(time.time())), "n0"
        headers = {"X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": nonce,
                   "X-Lark-Signature": signature(ts, nonce, KEY, body)}
        assert await _post_raw(feishu, body, headers) == 400
    assert await feishu.snapshot() == before


async def test_unknown_event_type_is_acknowledged_ignored_and_logged(
    feishu: FeishuEnv, caplog: pytest.LogCaptureFixture
) -> None:
    before = await feishu.snapshot()
    with caplog.at_level(logging.INFO, logger="adapters.feishu.webhook"):
        answer = await feishu.push(event_envelope("im.message.reaction.created_v1", {"reaction_type": {}}, TOKEN))
    assert answer == (200, {"msg": "success"})  # acknowledged: Feishu must not push it again
    assert "im.message.reaction.created_v1" in caplog.text
    assert await feishu.snapshot() == before


async def test_oversized_body_is_a_413(feishu: FeishuEnv) -> None:
    before = await feishu.snapshot()
    huge = message_event(TOKEN, content={"text": "漏油" * 400_000})  # ~2.4 MB > MAX_BODY_BYTES (1 MiB)
    status, _ = await feishu.push(huge)
    assert status == 413
    assert await feishu.snapshot() == before


# --- outbound failures: retried later, nothing lost ---


async def test_429_is_retried_after_the_reset_and_delivered_once(feishu: FeishuEnv) -> None:
    feishu.fake.rate_limit_next(reset_s=30)  # the first message call is refused
    await feishu.say(CUSTOMER, "中控黑屏")

    async def deferred() -> OutboxRow | None:
        rows = await feishu.outbox_rows()
        return next((r for r in rows if r.status == "pending" and r.attempts == 1), None)

    row = await eventually(deferred, what="an outbox row to be deferred")
    assert "限流" in (row.error or "")
    due_in = row.next_attempt_at.replace(tzinfo=row.next_attempt_at.tzinfo or UTC) - feishu.clock.now()
    assert due_in > timedelta(seconds=25)  # the x-ogw-ratelimit-reset header is honoured
    await feishu.settled_except(row.id)
    delivered = len(feishu.fake.sent())
    await asyncio.sleep(1.2)  # the dispatcher polls meanwhile and must leave the row alone
    assert len(feishu.fake.sent()) == delivered
    assert (await feishu.outbox_row(row.id)).status == "pending"

    feishu.clock.advance(timedelta(seconds=31))
    feishu.runtime.dispatcher.wake.set()
    await feishu.settled()
    again = await feishu.outbox_row(row.id)
    assert (again.status, again.attempts, again.error) == ("sent", 2, None)
    assert again.external_id in feishu.fake.messages
    rows = await feishu.outbox_rows()
    assert all(r.status == "sent" for r in rows) and len(feishu.fake.sent()) == len(rows)  # nothing lost or doubled


async def test_5xx_is_retried_with_backoff_until_feishu_recovers(feishu: FeishuEnv) -> None:
    feishu.fake.server_error_next(times=3)  # the next three message calls fail, whichever rows they carry
    await feishu.say(CUSTOMER, "中控黑屏")
    for _ in range(20):  # each failure pushes its row back by 2 s, 4 s ...: jump over the backoff
        rows = await feishu.outbox_rows()
        if rows and all(r.status == "sent" for r in rows) and not feishu.fake.pending_failures:
            break
        await asyncio.sleep(0.3)
        feishu.clock.advance(timedelta(seconds=5))
        feishu.runtime.dispatcher.wake.set()
    await feishu.settled()
    rows = await feishu.outbox_rows()
    assert rows and all(r.status == "sent" for r in rows)
    assert sum(r.attempts for r in rows) == len(rows) + 3  # three failed attempts, then each row once
    assert len(feishu.fake.sent()) == len(rows)  # nothing lost, nothing sent twice
    assert len(feishu.fake.calls("POST", "/im/v1/messages")) == len(rows) + 3
    reply = await feishu.message_to(CUSTOMER, lambda m: CREATED in m.text)
    assert reply.receive_id == CUSTOMER


async def test_url_verification_through_the_app(feishu: FeishuEnv) -> None:
    challenge = {"challenge": "ch-e2e", "token": TOKEN, "type": "url_verification"}
    resp = await feishu.client.post("/feishu/events", json={"encrypt": encrypt(json.dumps(challenge), KEY)})
    assert (resp.status, await resp.json()) == (200, {"challenge": "ch-e2e"})
    assert await feishu.count(InboxRow) == 0


async def test_opening_the_bot_chat_gets_the_help_text(feishu: FeishuEnv) -> None:
    event = {"chat_id": "oc_p2p_new", "operator_id": {"open_id": "ou_newcomer"}, "last_message_id": ""}
    assert await feishu.push(event_envelope("im.chat.access_event.bot_p2p_chat_entered_v1", event, TOKEN)) == (
        200, {"msg": "success"})
    greeting = await feishu.message_to("ou_newcomer", lambda m: True)
    assert greeting.text.startswith("您好，我是工单助手。")


def test_the_app_with_feishu_configured_does_not_import_lark_oapi(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from bot.web.app import build_app
        from tests.conftest import make_settings
        settings = make_settings("sqlite:///{tmp_path / 'x.db'}", __import__("pathlib").Path("{tmp_path}"),
                                 feishu_app_id="cli_x", feishu_app_secret="s", feishu_encrypt_key="k")
        app = build_app(settings)
        assert [a.platform for a in app[__import__("bot.web.api").web.api.RUNTIME].adapters] == ["feishu"]
        leaked = sorted(name for name in sys.modules if name.startswith("lark_oapi"))
        print(leaked[:3])
        sys.exit(1 if leaked else 0)
    """)
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
