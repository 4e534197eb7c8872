"""kf/sync_msg: pull what WeChat customers sent and put it in the inbox.

A kf_msg_or_event callback carries no message, only a `Token` (valid 10 minutes) and the
account. The callback answers at once and schedules `KfSync.request`, which pulls pages of up
to 1000 from the account's stored cursor until `has_more` is 0.

Exactly once, with nothing lost: every page is accepted into the inbox (unique per
(platform, msgid): a message pulled twice is one row) *before* its next_cursor is saved, so a
sync that fails midway resumes from the last saved cursor and re-pulls at most one page,
which dedupes. The cursor is saved over the version that was read: when two syncers (two
processes, a callback re-sent) pull the same page, only one moves the cursor; the other stops.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.base import adapter_logger
from adapters.wecom.api import WeComApi
from adapters.wecom.kf_config import PLATFORM, KfConfig, external_id
from adapters.wecom.kf_menu import decode_menu_id
from adapters.wecom.kf_state import KfState
from core.inbound import InboundKind, InboundMessage
from core.ports import InboxPort

log = adapter_logger(__name__)

# origin of a synced message: 3 the customer, 4 the system (events), 5 a servicer (our own sends).
ORIGIN_CUSTOMER = 3
UNSUPPORTED = {"voice": "语音", "video": "视频", "file": "文件"}
PLEASE_TYPE = "抱歉，暂时无法识别{kind}消息。请直接用文字描述遇到的问题，或发送现场照片，我们会马上为您处理。"

# Hooks the composition root supplies (bot/platforms/wecom_kf.py).
OnEnter = Callable[[str, str], Awaitable[None]]  # (our external id, store code from scene_param/scene)
SendPolite = Callable[[str, str], Awaitable[None]]  # (our external id, text): answer outside the inbox
CustomerSpoke = Callable[[str], None]  # (our external id): release held notices


@dataclass(slots=True)
class _Page:
    spoken: dict[str, tuple[datetime, str]] = field(default_factory=dict)  # sender -> newest (when, msgid)
    inbound: dict[str, list[InboundMessage]] = field(default_factory=dict)  # sender -> in order
    polite: list[tuple[str, str]] = field(default_factory=list)  # (sender, text) outside the inbox


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    pages: int = 0
    pulled: int = 0
    accepted: int = 0  # new inbox rows
    superseded: bool = False  # another syncer moved the cursor first


class KfSync:
    def __init__(
        self,
        config: KfConfig,
        api: WeComApi,
        state: KfState,
        inbox: InboxPort,
        *,
        on_enter: OnEnter | None = None,
        send_polite: SendPolite | None = None,
        customer_spoke: CustomerSpoke | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._api = api
        self._state = state
        self._inbox = inbox
        self._on_enter = on_enter
        self._send_polite = send_polite
        self._customer_spoke = customer_spoke
        self._clock = clock
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: dict[str, str] = {}  # open_kfid -> newest token that arrived mid-sync
        self.last_error: BaseException | None = None

    # --- scheduling (from the callback) --------------------------------------------------

    def request(self, open_kfid: str, token: str) -> None:
        """Sync `open_kfid` soon, off the request path; one sync per account at a time in this
        process (a callback during a sync makes it run once more with the newer token)."""
        if open_kfid not in self._config.open_kfids:
            log.warning("wecom_kf: kf_msg_or_event for unknown open_kfid %r ignored", open_kfid)
            return
        if open_kfid in self._running:
            self._again[open_kfid] = token
            return
        self._running[open_kfid] = asyncio.get_running_loop().create_task(self._run(open_kfid, token))

    async def _run(self, open_kfid: str, token: str) -> None:
        try:
            while True:
                try:
                    await self.sync(open_kfid, token)
                except Exception as exc:  # noqa: BLE001 - logged; the next callback resumes from the cursor
                    self.last_error = exc
                    log.warning("wecom_kf: sync of %s stopped: %r (resumes from the saved cursor)", open_kfid, exc)
                if (token := self._again.pop(open_kfid, "")) == "":
                    return
        finally:
            self._running.pop(open_kfid, None)

    async def idle(self) -> None:
        """Wait for running syncs (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    # --- one sync --------------------------------------------------------------------

    async def sync(self, open_kfid: str, token: str) -> SyncOutcome:
        saved = await self._state.cursor(open_kfid)
        pages = pulled = accepted = 0
        while True:
            payload: dict[str, Any] = {"cursor": saved[0], "limit": self._config.sync_limit,
                                       "voice_format": 0, "open_kfid": open_kfid}
            if token:
                payload["token"] = token
            page = await self._api.post("kf/sync_msg", payload)
            messages = page.get("msg_list") or []
            pages += 1
            pulled += len(messages)
            accepted += await self._accept_page(open_kfid, messages)
            moved = await self._state.save_cursor(open_kfid, saved, str(page.get("next_cursor") or saved[0]))
            if moved is None:
                log.info("wecom_kf: another sync of %s moved the cursor first; leaving it the rest", open_kfid)
                return SyncOutcome(pages, pulled, accepted, superseded=True)
            saved = moved
            if not int(page.get("has_more") or 0):
                return SyncOutcome(pages, pulled, accepted)

    async def _accept_page(self, open_kfid: str, messages: list[Any]) -> int:
        """One page: read every message, open the senders' budget windows (one transaction), then
        accept into the inbox — one customer's messages in order, different customers at once (on
        SQLite their inserts share group commits; one at a time a page of 1000 took seconds)."""
        page = _Page()
        for raw in messages:
            if not isinstance(raw, dict):
                continue
            try:
                inbound = await self._translate(open_kfid, raw, page)
            except Exception:
                log.exception("wecom_kf: message %r could not be read", raw.get("msgid"))
                continue
            if inbound is not None:
                page.inbound.setdefault(inbound.sender, []).append(inbound)
        with_held = await self._state.customers_spoke(page.spoken)
        if self._customer_spoke is not None:
            for sender in sorted(with_held):
                self._customer_spoke(sender)
        for sender, text in page.polite:
            if self._send_polite is not None:
                await self._send_polite(sender, text)
        counts = await asyncio.gather(*(self._accept_in_order(items) for items in page.inbound.values()))
        return sum(counts)

    async def _accept_in_order(self, items: list[InboundMessage]) -> int:
        accepted = 0
        for inbound in items:
            if await self._inbox.accept(inbound):
                accepted += 1
        return accepted

    async def _translate(self, open_kfid: str, msg: dict[str, Any], page: _Page) -> InboundMessage | None:
        msgid = str(msg.get("msgid") or "")
        msg_type = str(msg.get("msgtype") or "")
        if msg_type == "event":
            return await self._event(open_kfid, msgid, msg.get("event") or {})
        account = str(msg.get("open_kfid") or open_kfid)
        user = str(msg.get("external_userid") or "")
        if int(msg.get("origin") or 0) != ORIGIN_CUSTOMER or not user or not msgid:
            return None  # our own sends (origin 5) come back through sync too
        if account not in self._config.open_kfids:
            log.warning("wecom_kf: message for unknown open_kfid %r ignored", account)
            return None
        sender = external_id(account, user)
        at = _at(msg.get("send_time"), self._clock())
        if sender not in page.spoken or at >= page.spoken[sender][0]:
            page.spoken[sender] = (at, msgid)
        key = f"msg:{msgid}"
        if msg_type == "text":
            text = msg.get("text") or {}
            menu_id = str(text.get("menu_id") or "")
            if menu_id and (target := decode_menu_id(menu_id)) is not None:
                card_id, action = target
                return InboundMessage(PLATFORM, key, sender, InboundKind.CARD_ACTION, card_id=card_id,
                                      action=action, reply_context={"menu_id": menu_id})
            return InboundMessage(PLATFORM, key, sender, InboundKind.TEXT, text=str(text.get("content") or ""))
        if msg_type == "image":
            media = str((msg.get("image") or {}).get("media_id") or "")
            return InboundMessage(PLATFORM, key, sender, InboundKind.IMAGE, media_ref=media or None)
        if msg_type == "location":
            where = msg.get("location") or {}
            label = " ".join(str(where.get(k) or "") for k in ("name", "address")).strip()
            return InboundMessage(PLATFORM, key, sender, InboundKind.LOCATION, lat=_coordinate(where, "latitude"),
                                  lng=_coordinate(where, "longitude"), text=label or None)
        if msg_type in UNSUPPORTED:
            if await self._state.first_time(msgid, _now(self._clock)):
                page.polite.append((sender, PLEASE_TYPE.format(kind=UNSUPPORTED[msg_type])))
            return None
        log.info("wecom_kf: ignoring %r message %s", msg_type, msgid)
        return None

    async def _event(self, open_kfid: str, msgid: str, event: dict[str, Any]) -> InboundMessage | None:
        kind = str(event.get("event_type") or "")
        account = str(event.get("open_kfid") or open_kfid)
        user = str(event.get("external_userid") or "")
        if kind == "msg_send_fail":
            log.warning("wecom_kf: message %s to %s failed (fail_type %s)", event.get("fail_msgid"), user,
                        event.get("fail_type"))
            return None
        if kind != "enter_session" or not user or not msgid:
            return None
        if account not in self._config.open_kfids:
            log.warning("wecom_kf: enter_session for unknown open_kfid %r ignored", account)
            return None
        sender = external_id(account, user)
        store_code = str(event.get("scene_param") or event.get("scene") or "").strip()
        if store_code and self._on_enter is not None:
            await self._on_enter(sender, store_code)
        context: dict[str, Any] = {}
        if code := str(event.get("welcome_code") or ""):
            context = {"welcome_code": code, "welcome_code_at": self._clock()}
        return InboundMessage(PLATFORM, f"evt:{msgid}", sender, InboundKind.ENTER, reply_context=context)


def _now(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


def _at(value: Any, fallback: float) -> datetime:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = fallback
    if not math.isfinite(seconds) or seconds <= 0:
        seconds = fallback
    return datetime.fromtimestamp(min(seconds, fallback + 300), UTC)  # never a window from the future


def _coordinate(where: dict[str, Any], name: str) -> float | None:
    try:
        value = float(where.get(name))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
