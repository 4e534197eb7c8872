"""Background loops of one process: inbox processing and outbox delivery."""

from __future__ import annotations

import asyncio
import collections
import logging
from datetime import timedelta

from core.errors import DeliveryRejected, DeliveryRetryLater
from core.inbound import InboundMessage
from core.ports import ChannelSender, OutboundDelivery
from core.wakeups import wait_for_event
from storage.inbox import SqlInbox
from storage.outbox import ClaimedDelivery, SqlOutbox, offer_ticket
from storage.sqlite.session import let_others_run

log = logging.getLogger(__name__)


class InboxProcessor:
    """Processes inbox rows: right after they are accepted, and by a sweep after a crash."""

    def __init__(self, inbox: SqlInbox, handle: object, *, concurrency: int = 4) -> None:
        self.inbox = inbox
        self._handle = handle  # async (InboundMessage) -> None
        # A burst must not starve the inbox inserts that acknowledge platforms: at most `concurrency`
        # workers process rows (each holds one database connection at a time). A queue and a few
        # workers, not a task per row: a burst of thousands of rows would otherwise be thousands of
        # live coroutines for the garbage collector to walk.
        self._concurrency = concurrency
        self._waiting: collections.deque[int] = collections.deque()
        self._queued: set[int] = set()  # rows scheduled here and not done yet: not the sweep's business
        self._workers: set[asyncio.Task[None]] = set()
        self._active = 0

    def schedule(self, row_id: int) -> None:
        if row_id in self._queued:
            return
        self._queued.add(row_id)
        self._waiting.append(row_id)
        if self._active < self._concurrency:
            self._active += 1
            task = asyncio.get_running_loop().create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        try:
            while self._waiting:
                row_id = self._waiting.popleft()
                try:
                    await self._process_gated(row_id)
                except Exception:  # the database failed under us: the sweep retries the row later
                    log.exception("inbox row %s could not be processed", row_id)
                finally:
                    self._queued.discard(row_id)
        finally:
            self._active -= 1  # in the same step as the empty check: schedule() never strands a row

    async def _process_gated(self, row_id: int) -> None:
        # Accepts go first, before our transaction (see SqlInbox.accepts_settled).
        await self.inbox.accepts_settled()
        await self.process(row_id)
        # Then let the loop run: on SQLite the handling never yields, and requests that arrived
        # meanwhile must not wait until a backlog is worked off.
        await let_others_run()

    async def process(self, row_id: int) -> None:
        """Claim, handle and finish a row in one transaction (the units of work of the handling are
        savepoints in it): one commit per message instead of four, and a crash in between leaves the
        row pending, as it was, for the sweep. On SQLite rows handled back to back commit as a group."""
        async with self.inbox.one_transaction():
            message = await self.inbox.claim(row_id)
            if message is not None:
                await self.process_claimed(row_id, message)

    async def process_claimed(self, row_id: int, message: InboundMessage) -> None:
        """Handle a row this caller holds (claimed, or accepted with `schedule=False`), then finish it."""
        if await self.handle_claimed(row_id, message):
            await self.inbox.finish(row_id)

    async def handle_claimed(self, row_id: int, message: InboundMessage) -> bool:
        """Run the conversation on a held row. True: handled, and the caller finishes the row;
        False: it failed, and the row is already back in the inbox with the error."""
        try:
            await self._handle(message)  # type: ignore[operator]
        except Exception as error:
            log.exception("inbox row %s failed", row_id)
            await self.inbox.finish(row_id, error=f"{type(error).__name__}: {error}")
            return False
        return True

    async def sweep(self) -> int:
        """Rows left behind (a crash, an error, another process gone) join the same queue as fresh
        ones. Rows already queued here (a burst older than 10 s) are not added twice."""
        ids = [i for i in await self.inbox.stale_pending(timedelta(seconds=10)) if i not in self._queued]
        for row_id in ids:
            self.schedule(row_id)
        return len(ids)

    async def drain(self) -> None:
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)


class OutboxDispatcher:
    """Delivers pending outbox rows through the platform senders, with retries and backoff."""

    def __init__(self, outbox: SqlOutbox, senders: dict[str, ChannelSender]) -> None:
        self.outbox = outbox
        self.senders = senders
        self.wake = asyncio.Event()

    async def run_once(self) -> int:
        # Rows a dead sender left "sending" are claimed again once due (no separate requeue pass).
        claimed = await self.outbox.claim_due(set(self.senders))
        if claimed:
            await asyncio.gather(*(self._deliver(item) for item in claimed))
        return len(claimed)

    async def _deliver(self, item: ClaimedDelivery) -> None:
        sender = self.senders[item.channel]
        try:
            external = await self._external_id(item)
            if external is None:
                await self.outbox.mark_dead(item.outbox_id, f"recipient {item.recipient_id} has no {item.channel} id")
                return
            card_ref = None
            if item.notification.replaces_card_id:
                card_ref = await self.outbox.card_ref(item.notification.replaces_card_id, item.channel)
            receipt = await sender.send(OutboundDelivery(
                outbox_id=item.outbox_id, platform=item.channel, recipient_external_id=external,
                notification=item.notification, attempt=item.attempt, card_ref=card_ref,
                reply_context=item.reply_context))
        except DeliveryRetryLater as error:
            log.warning("delivery %s retry later: %s", item.outbox_id, error.reason)
            await self.outbox.mark_retry(item.outbox_id, item.attempt, error.reason, error.retry_after_s)
            return
        except DeliveryRejected as error:
            log.error("delivery %s rejected: %s", item.outbox_id, error.reason)
            await self.outbox.mark_dead(item.outbox_id, error.reason)
            return
        except Exception as error:
            log.exception("delivery %s failed", item.outbox_id)
            await self.outbox.mark_retry(item.outbox_id, item.attempt, f"{type(error).__name__}: {error}", None)
            return
        card = item.notification.card
        card_id = card.id if card else item.notification.replaces_card_id
        # One transaction (a member of the group commit) for the mark and the card's reference.
        await self.outbox.mark_sent(item.outbox_id, receipt.external_message_id,
                                    offer_of=offer_ticket(item.notification),
                                    card_ref=(card_id, item.channel, receipt.card_ref)
                                    if card_id and receipt.card_ref else None)

    async def _external_id(self, item: ClaimedDelivery) -> str | None:
        if item.resolved:  # read with the claim
            return item.external_id
        return await self.outbox.external_id(item.recipient_id, item.channel)

    async def run_forever(self, idle_s: float = 0.5) -> None:
        while True:
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("outbox loop error")
                busy = 0
            if not busy:
                await wait_for_event(self.wake, idle_s)
                self.wake.clear()
