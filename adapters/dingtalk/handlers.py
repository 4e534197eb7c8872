"""dingtalk_stream handlers: decode a frame, hand it to the inbox, answer the ack code.

Imported only when DingTalk is configured (it imports the SDK). They run on the stream thread's
event loop; the inbox lives on the application's loop, so the hand-over goes through
`run_coroutine_threadsafe` and the ack (sent by the SDK when `process` returns) follows the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dingtalk_stream import (
    AckMessage,
    CallbackHandler,
    CallbackMessage,
    ChatbotMessage,
    Credential,
    DingTalkStreamClient,
    EventHandler,
    EventMessage,
)

from adapters.base import adapter_logger
from adapters.dingtalk.config import DingTalkConfig
from adapters.dingtalk.inbound import (
    MalformedPayload,
    card_callback_to_inbound,
    event_to_inbound,
    robot_message_to_inbound,
)
from core.inbound import InboundMessage
from core.ports import InboxPort

log = adapter_logger(__name__)

Ack = tuple[int, str]
OK: Ack = (AckMessage.STATUS_OK, "OK")
IGNORED: Ack = (AckMessage.STATUS_OK, "ignored")
# Non-200 tells the platform we did not take the frame; events are redelivered.
NOT_STORED: Ack = (AckMessage.STATUS_SYSTEM_EXCEPTION, "not stored, retry")


class InboxBridge:
    def __init__(self, inbox: InboxPort, app_loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self._inbox = inbox
        self._app_loop = app_loop
        self._timeout_s = timeout_s

    async def deliver(self, message: InboundMessage) -> Ack:
        future = asyncio.run_coroutine_threadsafe(self._inbox.accept(message), self._app_loop)
        try:
            # Awaiting the wrapped future (instead of .result()) keeps this loop free for other frames
            # and pings while the commit happens; the ack still waits for it. Shielded: when the commit
            # is slow (a burst on SQLite) the answer is "retry", but the insert is not abandoned:
            # DingTalk does not redeliver robot messages, and a redelivery is deduped anyway.
            is_new = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self._timeout_s)
        except TimeoutError:
            log.warning("dingtalk: inbox commit of %r still running after %.1fs, answered retry",
                        message.event_key, self._timeout_s)
            return NOT_STORED
        except Exception:  # any failure of the inbox means "not committed": never ack it as taken
            log.exception("dingtalk: inbox did not accept %r", message.event_key)
            return NOT_STORED
        log.info("dingtalk: %s %r", "stored" if is_new else "duplicate", message.event_key)
        return OK


class TranslatingCallbackHandler(CallbackHandler):
    """A callback topic: translate the frame's data to an InboundMessage and deliver it.

    Robot messages and card callbacks differ only in `translate` and in what they are called in
    the log. The card itself is updated later by the outbox once the service has decided; the
    callback answer carries no card data.
    """

    def __init__(self, bridge: InboxBridge, translate: Callable[[Any], InboundMessage | None], what: str) -> None:
        super().__init__()
        self.logger = log
        self._bridge = bridge
        self._translate = translate
        self._what = what

    async def process(self, message: CallbackMessage) -> Ack:
        try:
            inbound = self._translate(message.data)
        except MalformedPayload as exc:
            log.warning("dingtalk: malformed %s %r ignored: %r", self._what, message.headers.message_id, str(exc))
            return IGNORED
        if inbound is None:
            log.info("dingtalk: %s type not handled, ignored: %r", self._what, message.headers.message_id)
            return IGNORED
        return await self._bridge.deliver(inbound)


class AllEventsHandler(EventHandler):
    def __init__(self, bridge: InboxBridge) -> None:
        super().__init__()
        self.logger = log
        self._bridge = bridge

    async def process(self, event: EventMessage) -> Ack:
        headers = event.headers
        try:
            inbound = event_to_inbound(headers.event_id, headers.event_type, event.data)
        except MalformedPayload as exc:
            log.warning("dingtalk: malformed event %r ignored: %r", headers.message_id, str(exc))
            return IGNORED
        if inbound is None:
            log.info("dingtalk: event %r (%r) not handled, acked", headers.event_type, headers.event_id)
            return IGNORED
        return await self._bridge.deliver(inbound)


def build_client(config: DingTalkConfig, inbox: InboxPort, app_loop: asyncio.AbstractEventLoop) -> DingTalkStreamClient:
    """An SDK client with our handlers registered; the connection itself is run by stream.py."""
    client = DingTalkStreamClient(Credential(config.client_id, config.client_secret), logger=log)
    bridge = InboxBridge(inbox, app_loop, config.accept_timeout_s)
    client.register_callback_handler(
        ChatbotMessage.TOPIC, TranslatingCallbackHandler(bridge, robot_message_to_inbound, "robot message"))
    card_handler = TranslatingCallbackHandler(bridge, card_callback_to_inbound, "card callback")
    client.register_callback_handler(CallbackHandler.TOPIC_CARD_CALLBACK, card_handler)
    client.register_all_event_handler(AllEventsHandler(bridge))
    client.pre_start()
    return client
