"""Merge plain texts to one person that queue up behind each other into one WeCom message.

Every message to a person costs one of their 30 a minute. Texts to the same person are sent
one at a time; whatever queued up while a send was in flight leaves as ONE message (up to
WeCom's 2048 bytes). An isolated text is never delayed. A burst — a reminder storm for a
supervisor, or rows the budget put back that come due together — costs a message or two
instead of dozens.

Each queued delivery is answered with the merged message's receipt or its error, so every
outbox row is marked sent, retried or dead exactly as if it had been sent alone. If WeCom
refuses a merged message for good, its parts are tried one by one so that one bad text
cannot kill the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.errors import DeliveryRejected, DeliveryRetryLater
from core.ports import DeliveryReceipt

SEPARATOR = "\n\n"

SendText = Callable[[str, str], Awaitable[DeliveryReceipt]]  # (recipient, text) -> receipt


@dataclass(slots=True)
class _Queued:
    text: str
    future: asyncio.Future[DeliveryReceipt] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class TextCoalescer:
    def __init__(self, send: SendText, max_bytes: int) -> None:
        self._send = send
        self._max_bytes = max_bytes
        self._queues: dict[str, list[_Queued]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def send(self, recipient: str, text: str) -> DeliveryReceipt:
        item = _Queued(text)
        self._queues.setdefault(recipient, []).append(item)
        lock = self._locks.setdefault(recipient, asyncio.Lock())
        try:
            async with lock:
                while not item.future.done():
                    await self._flush(recipient)
        finally:
            if not lock.locked() and not self._queues.get(recipient):
                self._queues.pop(recipient, None)
                self._locks.pop(recipient, None)
        return item.future.result()

    async def _flush(self, recipient: str) -> None:
        batch = self._take(recipient)
        try:
            receipt = await self._send(recipient, SEPARATOR.join(q.text for q in batch))
        except DeliveryRejected as error:
            if len(batch) == 1:
                _fail(batch, error)
                return
            await self._one_by_one(recipient, batch)
        except Exception as error:  # noqa: BLE001 - handed to every waiting delivery, re-raised by each
            _fail(batch, error)
        except BaseException:
            # This task is being cancelled (shutdown): the others must not look cancelled too.
            _fail(batch, DeliveryRetryLater("wecom: send interrupted"))
            raise
        else:
            for queued in batch:
                queued.future.set_result(receipt)

    def _take(self, recipient: str) -> list[_Queued]:
        """The oldest queued texts that fit one message (at least one)."""
        queue = self._queues[recipient]
        size = len(queue[0].text.encode())
        count = 1
        for queued in queue[1:]:
            size += len(SEPARATOR) + len(queued.text.encode())
            if size > self._max_bytes:
                break
            count += 1
        batch, self._queues[recipient] = queue[:count], queue[count:]
        return batch

    async def _one_by_one(self, recipient: str, batch: list[_Queued]) -> None:
        for queued in batch:
            try:
                queued.future.set_result(await self._send(recipient, queued.text))
            except Exception as error:  # noqa: BLE001 - this delivery's own outcome
                _fail([queued], error)


def _fail(batch: list[_Queued], error: BaseException) -> None:
    for queued in batch:
        if not queued.future.done():
            queued.future.set_exception(error)
            # Its owner re-raises it; if the owner was cancelled meanwhile, nobody will: no log noise.
            queued.future.exception()
