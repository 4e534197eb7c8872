"""Long-connection mode: lark-oapi's websocket client in its own thread and event loop.

For deployments without a public URL. Events arrive in plaintext over the socket (the
connection itself is authenticated with app id/secret); they go through the same
`events.translate` as the HTTP endpoint and into the same inbox, handed to the app's
loop with run_coroutine_threadsafe. lark_oapi is imported here only, inside the thread.

Traps handled: `lark.ws.Client.start()` blocks forever on a module-level loop captured
when lark_oapi.ws.client is imported — we give it a fresh loop in our thread; the
dispatcher is synchronous, so the callback blocks (its own thread) until the inbox row is
committed; an exception there makes the SDK answer 500 and Feishu delivers again.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from adapters.base import adapter_logger
from adapters.feishu.config import FeishuConfig
from adapters.feishu.errors import MalformedEvent
from adapters.feishu.events import MESSAGE_RECEIVED, P2P_ENTERED, Ignored, translate
from adapters.feishu.webhook import CARD_TOAST
from core.ports import InboxPort

log = adapter_logger(__name__)


class FeishuLongConnection:
    def __init__(
        self,
        config: FeishuConfig,
        inbox: InboxPort,
        bot_open_id: Callable[[], str],
        accept_timeout_s: float = 10.0,
    ) -> None:
        self._config = config
        self._inbox = inbox
        self._bot_open_id = bot_open_id
        self._accept_timeout_s = accept_timeout_s
        self._thread: threading.Thread | None = None
        self._ws_loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        app_loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, args=(app_loop,), name="feishu-long-connection", daemon=True)
        self._thread.start()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the socket thread. Polls, because the SDK may be between loop runs (importing,
        or catching a stop inside its own reconnect handler) when we first ask."""
        self._stopping.set()
        thread = self._thread
        deadline = asyncio.get_running_loop().time() + timeout_s
        while thread is not None and thread.is_alive() and asyncio.get_running_loop().time() < deadline:
            loop = self._ws_loop
            if loop is not None and loop.is_running():
                loop.call_soon_threadsafe(loop.stop)
            await asyncio.sleep(0.05)
        if thread is not None and thread.is_alive():
            log.warning("飞书长连接线程未能在 %.0f 秒内停止（守护线程，随进程退出）", timeout_s)

    def build_event_handler(self, app_loop: asyncio.AbstractEventLoop) -> Any:
        """The lark EventDispatcherHandler the websocket client feeds (also used by tests)."""
        import lark_oapi as lark
        from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse

        def on_event(data: Any) -> None:
            self.deliver(_payload_of(data), app_loop)

        def on_card(data: Any) -> Any:
            result = self.deliver(_payload_of(data), app_loop)
            return P2CardActionTriggerResponse({} if isinstance(result, Ignored) else CARD_TOAST)

        # Empty key/token: over the socket events are plaintext and pre-authenticated.
        return (
            lark.EventDispatcherHandler.builder("", "")
            .register_p2_customized_event(MESSAGE_RECEIVED, on_event)
            .register_p2_customized_event(P2P_ENTERED, on_event)
            .register_p2_card_action_trigger(on_card)
            .build()
        )

    def deliver(self, payload: dict[str, Any], app_loop: asyncio.AbstractEventLoop) -> Any:
        """Translate and store one event; runs in the websocket thread. A malformed event is
        logged and acknowledged: delivered again it would be just as malformed."""
        try:
            result = translate(payload, self._bot_open_id())
        except MalformedEvent as exc:
            log.warning("飞书长连接事件格式不正确，已确认并忽略：%r %r", exc.reason, exc.data)
            return Ignored(exc.reason)
        if isinstance(result, Ignored):
            log.info("飞书长连接事件已确认但忽略：%r", result.reason)
            return result
        future = asyncio.run_coroutine_threadsafe(self._inbox.accept(result), app_loop)
        future.result(timeout=self._accept_timeout_s)
        return result

    def _run(self, app_loop: asyncio.AbstractEventLoop) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._ws_loop = loop
        client: Any = None
        try:
            import lark_oapi as lark
            import lark_oapi.ws.client as ws_client

            ws_client.loop = loop  # see module docstring: the SDK's loop must be this thread's
            if self._stopping.is_set():  # stop() came while lark_oapi was importing
                return
            client = lark.ws.Client(
                self._config.app_id,
                self._config.app_secret,
                event_handler=self.build_event_handler(app_loop),
                domain=self._config.domain,
            )
            client.start()
        except RuntimeError as exc:  # loop.stop() from stop(): "Event loop stopped before Future completed"
            log.info("飞书长连接已停止：%r", exc)
        except Exception:  # the thread must not die silently
            log.exception("飞书长连接异常退出")
        finally:
            _cancel_pending(loop)
            if client is not None:
                _close_socket(client, loop)
            loop.close()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    # The SDK leaves background tasks (receive loop, ping loop, cache cron); finish them before closing.
    for _ in range(3):  # a loop.stop() from stop() that lands late interrupts one round (seen in CI)
        pending = asyncio.all_tasks(loop)
        if not pending:
            return
        for task in pending:
            task.cancel()
        try:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            return
        except RuntimeError:  # "Event loop stopped before Future completed": go round again
            continue


def _close_socket(client: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Close the websocket politely so Feishu stops routing events to this connection at once.

    lark.ws.Client has no public stop: `_auto_reconnect`/`_disconnect` are its own internals
    (lark-oapi is pinned). Runs after the receive loop was cancelled, so nothing reconnects.
    """
    client._auto_reconnect = False
    try:
        loop.run_until_complete(asyncio.wait_for(client._disconnect(), timeout=2.0))
    except (OSError, TimeoutError, RuntimeError) as exc:  # a socket that is already gone is fine
        log.info("关闭飞书长连接时出错（忽略）：%r", exc)


def _payload_of(data: Any) -> dict[str, Any]:
    """The SDK's event object back to the wire dict, so translation is shared with HTTP."""
    from lark_oapi.core.json import JSON

    payload = json.loads(JSON.marshal(data) or "{}")
    return payload if isinstance(payload, dict) else {}
