"""Background loops of one process: inbox processing and outbox delivery."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from core.errors import DeliveryRejected, DeliveryRetryLater
from core.inbound import InboundMessage, Later
from core.ports import ChannelSender, OutboundDelivery
from core.wakeups import wait_for_event
from storage.inbox import SqlInbox
from storage.outbox import ClaimedDelivery, Sent, SqlOutbox, offer_ticket
from storage.sqlite.session import YIELD_TURNS, let_others_run
from storage.transactions.shared import commit_soon, savepoint

log = logging.getLogger(__name__)

ROW_TURNS = 4  # loop turns between two rows of a batch


class InboxProcessor:
    """Processes inbox rows: right after they are accepted, and by a sweep after a crash."""

    def __init__(self, inbox: SqlInbox, handle: object, *, concurrency: int = 4, batch: int = 1) -> None:
        """`batch` > 1 (SQLite): one worker handles up to `batch` waiting rows, in the order they were
        accepted, in one member of the group commit (storage/transactions/shared.py), each row in a
        savepoint of its own: a failure undoes that row only, which stays pending for the sweep. The
        rows then share one COMMIT instead of one each, and a burst is worked off in turns with the
        accepts (one batch, one accept, ...) instead of waiting for a pause in them. One worker, rows
        in order: two messages of one sender are never handled out of order."""
        self.inbox = inbox
        self._handle = handle  # async (InboundMessage) -> Later | None (bot/chat/conversation.py)
        # A burst must not starve the inbox inserts that acknowledge platforms: at most `concurrency`
        # workers process rows (each holds one database connection at a time). A queue and a few
        # workers, not a task per row: a burst of thousands of rows would otherwise be thousands of
        # live coroutines for the garbage collector to walk.
        self._concurrency = 1 if batch > 1 else concurrency
        self._batch = batch
        self._waiting: collections.deque[int] = collections.deque()
        self._queued: set[int] = set()  # rows scheduled here and not done yet: not the sweep's business
        self._workers: set[asyncio.Task[None]] = set()
        self._active = 0
        # Work handlers left for after their row's transaction (`Later`), by row, until it is taken.
        self._later: dict[int, Later] = {}
        self._answering: set[asyncio.Task[bool]] = set()
        # One sender's messages in the order they arrived, with several workers (PostgreSQL): a row whose
        # sender has a row being handled waits behind it, and that row's worker handles it next (a
        # location, then the report it belongs to). Rows the sweep schedules carry no sender.
        self._senders: dict[int, str] = {}  # row -> its sender, for rows scheduled with one
        self._behind: dict[str, collections.deque[int]] = {}  # sender being handled -> its rows waiting

    def schedule(self, row_id: int, sender: str | None = None) -> None:
        if row_id in self._queued:
            return
        self._queued.add(row_id)
        if sender is not None and self._batch == 1:
            self._senders[row_id] = sender
        self._waiting.append(row_id)
        if self._active < self._concurrency:
            self._active += 1
            task = asyncio.get_running_loop().create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        try:
            while self._waiting:
                rows = [self._waiting.popleft() for _ in range(min(self._batch, len(self._waiting)))]
                waits = False
                try:
                    if self._batch > 1:
                        await self._process_batch(rows)
                    else:
                        waits = await self._process_in_order(rows[0])
                except Exception:  # the database failed under us: the sweep retries the rows later
                    log.exception("inbox rows %s could not be processed", rows)
                finally:
                    if not waits:
                        self._queued.difference_update(rows)
                # Then let the loop run: on SQLite the handling never yields, and requests that
                # arrived meanwhile must not wait until a backlog is worked off.
                await let_others_run(ROW_TURNS if self._batch > 1 else YIELD_TURNS)
        finally:
            self._active -= 1  # in the same step as the empty check: schedule() never strands a row

    async def _process_in_order(self, row_id: int) -> bool:
        """Process the row, then the rows of its sender that arrived meanwhile; True: it waits behind an
        earlier row of its sender, which another worker is handling (and will handle this one next)."""
        sender = self._senders.pop(row_id, None)
        if sender is None:
            await self._process_gated(row_id)
            return False
        behind = self._behind.get(sender)
        if behind is not None:
            behind.append(row_id)
            return True
        self._behind[sender] = behind = collections.deque()
        try:
            await self._process_gated(row_id)
            while behind:
                next_row = behind.popleft()
                try:
                    await self._process_gated(next_row)
                except Exception:  # as in `_work`: this row only, the sweep retries it
                    log.exception("inbox row %s could not be processed", next_row)
                finally:
                    self._queued.discard(next_row)
        finally:
            del self._behind[sender]
            self._queued.difference_update(behind)  # left by a failure above: the sweep's now
        return False

    async def _process_gated(self, row_id: int) -> None:
        # Accepts go first, before our transaction (see SqlInbox.accepts_settled).
        await self.inbox.accepts_settled()
        later = await self._process_row(row_id)
        if later is not None:
            self._answer_in_background(row_id, later)

    async def _process_batch(self, rows: list[int]) -> None:
        """Several rows in one transaction, each in a savepoint (see __init__)."""
        laters: list[tuple[int, Later]] = []
        async with self.inbox.one_transaction():
            for index, row_id in enumerate(rows):
                if index:
                    # Requests that arrived meanwhile are read and answered (see `_work`): as many
                    # turns as a row processed alone gets (its commit's wait takes two or more).
                    await let_others_run(ROW_TURNS)
                try:
                    async with savepoint():
                        later = await self._claim_and_handle(row_id)
                except Exception:
                    # Undone, claim included: still pending, for the sweep (exactly once all the same).
                    log.exception("inbox row %s could not be processed", row_id)
                    continue
                if later is not None:
                    laters.append((row_id, later))
            commit_soon()  # the next batch waits for this commit: not for a pause in the accepts
        for row_id, later in laters:  # committed: their reads run now, outside the transaction
            self._answer_in_background(row_id, later)

    async def process(self, row_id: int) -> None:
        """Claim, handle and finish a row in one transaction (the units of work of the handling are
        savepoints in it): one commit per message instead of four, and a crash in between leaves the
        row pending, as it was, for the sweep. On SQLite rows handled back to back commit as a group.
        Work the handler left for later (`Later`) runs after that transaction, before this returns."""
        later = await self._process_row(row_id)
        if later is not None:
            await self.answer_later(row_id, later)

    async def _process_row(self, row_id: int) -> Later | None:
        async with self.inbox.one_transaction():
            return await self._claim_and_handle(row_id)

    async def _claim_and_handle(self, row_id: int) -> Later | None:
        # Inside the row's transaction: taken and finished in one statement (SqlInbox.take).
        message = await self.inbox.take(row_id)
        if message is None:
            return None
        if not await self.handle_claimed(row_id, message):
            return None
        later = self.take_later(row_id)
        if later is not None:
            await self.inbox.hold(row_id)  # the later work's transaction finishes it
        return later

    async def process_claimed(self, row_id: int, message: InboundMessage) -> None:
        """Handle a row this caller holds (claimed, or accepted with `schedule=False`), then finish it."""
        if await self.handle_claimed(row_id, message):
            later = self.take_later(row_id)
            if later is None:
                await self.inbox.finish(row_id)
            else:
                await self.answer_later(row_id, later)

    async def handle_claimed(self, row_id: int, message: InboundMessage) -> bool:
        """Run the conversation on a held row. True: handled, and the caller finishes the row (after
        the work left for later, if `take_later` gives some); False: it failed, and the row is already
        back in the inbox with the error."""
        try:
            later = await self._handle(message)  # type: ignore[operator]
        except Exception as error:
            log.exception("inbox row %s failed", row_id)
            await self.inbox.finish(row_id, error=f"{type(error).__name__}: {error}")
            return False
        if isinstance(later, Later):
            self._later[row_id] = later
        return True

    def take_later(self, row_id: int) -> Later | None:
        """The work the handling of this row left for after its transaction, if any (once)."""
        return self._later.pop(row_id, None)

    async def answer_later(self, row_id: int, later: Later,
                           then: Callable[[], Awaitable[None]] | None = None) -> bool:
        """Run a row's later work, outside the row's transaction (which has ended): the read, then
        the answer and the row's finish in one transaction (and `then`, the playground's read-back).
        A failure puts the row back in the inbox with the error, for the sweep (which handles the
        message again): False."""
        try:
            value = await later.read()
            async with self.inbox.one_transaction():
                await later.answer(value)
                await self.inbox.finish(row_id)
                if then is not None:
                    await then()
        except Exception as error:
            log.exception("inbox row %s: the work after its handling failed", row_id)
            await self.inbox.finish(row_id, error=f"{type(error).__name__}: {error}")
            return False
        return True

    def _answer_in_background(self, row_id: int, later: Later) -> None:
        # Not in the worker: the next rows must not wait for this one's read.
        task = asyncio.get_running_loop().create_task(self.answer_later(row_id, later))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def sweep(self) -> int:
        """Rows left behind (a crash, an error, another process gone) join the same queue as fresh
        ones. Rows already queued here (a burst older than 10 s) are not added twice."""
        ids = [i for i in await self.inbox.stale_pending(timedelta(seconds=10)) if i not in self._queued]
        for row_id in ids:
            self.schedule(row_id)
        return len(ids)

    async def drain(self) -> None:
        while self._workers or self._answering:
            await asyncio.gather(*list(self._workers), *list(self._answering), return_exceptions=True)


class _Marks:
    """Deliveries the platform accepted, waiting for their mark (OutboxDispatcher._mark_sent)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Its deliveries may all have been cancelled (a stop): their error is then nobody's to read.
        self.written.add_done_callback(lambda done: done.cancelled() or done.exception())


class OutboxDispatcher:
    """Delivers pending outbox rows through the platform senders, with retries and backoff."""

    def __init__(self, outbox: SqlOutbox, senders: dict[str, ChannelSender]) -> None:
        self.outbox = outbox
        self.senders = senders
        self.wake = asyncio.Event()
        self._marks: _Marks | None = None  # the batch deliveries' marks join now
        self._writing: set[asyncio.Task[None]] = set()

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
        await self._mark_sent(Sent(item.outbox_id, receipt.external_message_id,
                                   offer_of=offer_ticket(item.notification),
                                   card_ref=(card_id, item.channel, receipt.card_ref)
                                   if card_id and receipt.card_ref else None))

    async def _mark_sent(self, sent: Sent) -> None:
        """Marked, durably, before this returns; the deliveries that went through in the same loop
        turn share the mark's transaction (SqlOutbox.mark_sent), which begins at the next turn."""
        marks = self._marks
        if marks is None:
            marks = self._marks = _Marks()
            task = asyncio.get_running_loop().create_task(self._write_marks(marks))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)
        marks.sent.append(sent)
        await asyncio.shield(marks.written)

    async def _write_marks(self, marks: _Marks) -> None:
        self._marks = None  # from now on deliveries join the next batch
        try:
            await self.outbox.mark_sent(marks.sent)
        except asyncio.CancelledError:
            marks.written.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - every delivery of the batch fails with it (claimed again later)
            marks.written.set_exception(error)
        else:
            marks.written.set_result(None)

    async def drain(self) -> None:
        """The marks being written are written (a stop: before the engine goes)."""
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)

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
