"""The DingTalk Stream connection, in its own thread with its own event loop.

Why not `DingTalkStreamClient.start_forever()`: it calls `asyncio.run` (it cannot share the
application's loop), opens the connection with a blocking `requests` call without a timeout to a
URL frozen when the SDK was first imported, reconnects on fixed sleeps and never stops. We keep
the SDK for what it does well -- frame models, handler dispatch and acks (`route_message`) -- and
own the connection loop: aiohttp for the open-connection call, `websockets` like the SDK,
exponential backoff with jitter, and a clean `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import aiohttp

from adapters.base import adapter_logger
from adapters.dingtalk.config import DingTalkConfig
from adapters.wire import UnsafePayload, loads_bounded, unix_millis
from core.ports import InboxPort
from core.wakeups import wait_for_event

if TYPE_CHECKING:
    from dingtalk_stream import DingTalkStreamClient

log = adapter_logger(__name__)

OPEN_CONNECTION_PATH = "/v1.0/gateway/connections/open"
_ROUTED_TYPES = {"SYSTEM", "EVENT"}
# Header fields the SDK reads with int(): milliseconds since the epoch.
_INTEGER_HEADERS = ("time", "eventBornTime")


class StreamOpenFailed(Exception):
    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class DingTalkStream:
    """Start/stop from the application's loop; everything else runs on the stream thread."""

    def __init__(self, config: DingTalkConfig, inbox: InboxPort) -> None:
        self._config = config
        self._inbox = inbox
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()
        # Observable state (tests, health checks).
        self.connected = threading.Event()
        self.connections_opened = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def start(self) -> None:
        if self.running:
            return
        self._stop_requested.clear()
        app_loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._thread_main, args=(app_loop,), name="dingtalk-stream", daemon=True)
        self._thread.start()

    async def stop(self, timeout_s: float = 10.0) -> None:
        self._stop_requested.set()
        with self._lock:
            loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop may have closed already
                loop.call_soon_threadsafe(wake.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout_s)
            if self._thread.is_alive():
                log.error("dingtalk: stream thread did not stop within %.1fs", timeout_s)
            self._thread = None

    # --- stream thread ---

    def _thread_main(self, app_loop: asyncio.AbstractEventLoop) -> None:
        try:
            asyncio.run(self._run(app_loop))
        except Exception:  # the thread must not die silently
            log.exception("dingtalk: stream thread crashed")
        finally:
            self.connected.clear()

    async def _run(self, app_loop: asyncio.AbstractEventLoop) -> None:
        # Lazy: the SDK is imported only when DingTalk is configured and started.
        from adapters.dingtalk.handlers import build_client

        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
        wake = self._wake
        client = build_client(self._config, self._inbox, app_loop)
        backoff = self._config.reconnect_min_s
        timeout = aiohttp.ClientTimeout(total=self._config.http_timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                while not self._stop_requested.is_set():
                    try:
                        await self._session(http, client, wake)
                        backoff = self._config.reconnect_min_s  # a connection worked: start over
                    except (StreamOpenFailed, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                        log.warning("dingtalk: stream connection failed: %r", exc)
                    except Exception as exc:  # noqa: BLE001 - websockets errors and anything unforeseen: reconnect
                        log.warning("dingtalk: stream connection lost: %r", exc)
                    if self._stop_requested.is_set():
                        break
                    delay = backoff * random.uniform(0.8, 1.2)
                    log.info("dingtalk: reconnecting in %.1fs", delay)
                    await wait_for_event(wake, delay)
                    backoff = min(backoff * 2, self._config.reconnect_max_s)
        finally:
            with self._lock:
                self._loop = None
                self._wake = None

    async def _open_connection(self, http: aiohttp.ClientSession, client: DingTalkStreamClient) -> dict[str, Any]:
        subscriptions = [{"type": "EVENT", "topic": "*"}]
        subscriptions += [{"type": "CALLBACK", "topic": t} for t in client.callback_handler_map]
        body = {
            "clientId": self._config.client_id,
            "clientSecret": self._config.client_secret,
            "subscriptions": subscriptions,
            "ua": "ticketbot-dingtalk/1.0",
            "localIp": "",
        }
        url = self._config.openapi_endpoint + OPEN_CONNECTION_PATH
        async with http.post(url, json=body, headers={"Accept": "application/json"}) as response:
            text = await response.text()
            if response.status != 200:
                raise StreamOpenFailed(f"open connection: HTTP {response.status} {text[:200]}", status=response.status)
        connection = loads_bounded(text)
        if not isinstance(connection, dict) or not connection.get("endpoint") or not connection.get("ticket"):
            raise StreamOpenFailed(f"open connection: unexpected answer {text[:200]}")
        return connection

    async def _session(self, http: aiohttp.ClientSession, client: DingTalkStreamClient, wake: asyncio.Event) -> None:
        import websockets

        connection = await self._open_connection(http, client)
        uri = f"{connection['endpoint']}?ticket={quote_plus(connection['ticket'])}"
        async with websockets.connect(uri, open_timeout=self._config.http_timeout_s, ping_interval=30) as ws:
            client.websocket = ws
            self.connections_opened += 1
            self.connected.set()
            log.info("dingtalk: stream connected (%d)", self.connections_opened)
            tasks: set[asyncio.Task[None]] = set()
            watcher = asyncio.create_task(self._close_on_stop(ws, wake))
            try:
                async for raw in ws:
                    task = asyncio.create_task(self._handle(client, ws, raw))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            finally:
                self.connected.clear()
                watcher.cancel()
                if self._stop_requested.is_set():
                    for task in tasks:
                        task.cancel()

    @staticmethod
    async def _close_on_stop(ws: Any, wake: asyncio.Event) -> None:
        await wake.wait()
        await ws.close()

    async def _handle(self, client: DingTalkStreamClient, ws: Any, raw: str | bytes) -> None:
        from dingtalk_stream import DingTalkStreamClient

        try:
            frame = loads_bounded(raw)
        except UnsafePayload as exc:
            # Without JSON there is no messageId to ack: log and drop.
            log.warning("dingtalk: malformed frame (not JSON) ignored (%r): %.200r", exc, raw)
            return
        if not isinstance(frame, dict):
            log.warning("dingtalk: malformed frame (not an object) ignored: %.200r", raw)
            return
        if (problem := frame_problem(frame)) is not None:
            log.warning("dingtalk: malformed frame acked and ignored: %r", problem)
            await self._ack_ignored(ws, frame)
            return
        try:
            if self._routable(client, frame):
                # The SDK decodes, calls our handler and sends the ack when the handler returns.
                if await client.route_message(frame) == DingTalkStreamClient.TAG_DISCONNECT:
                    await ws.close()  # the server asked us to reconnect
            else:
                headers = frame.get("headers") or {}
                log.warning(
                    "dingtalk: unknown frame type/topic %r/%r acked and ignored",
                    frame.get("type"),
                    headers.get("topic"),
                )
                await self._ack_ignored(ws, frame)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("dingtalk: malformed frame acked and ignored: %r", exc)
            await self._ack_ignored(ws, frame)
        except Exception as exc:  # noqa: BLE001 - mostly a closed socket: the ack is lost, the platform redelivers
            log.warning("dingtalk: frame handling failed (no ack sent): %r", exc)

    @staticmethod
    def _routable(client: DingTalkStreamClient, frame: dict[str, Any]) -> bool:
        kind = frame.get("type")
        if kind in _ROUTED_TYPES:
            return True
        headers = frame.get("headers")
        return kind == "CALLBACK" and isinstance(headers, dict) and headers.get("topic") in client.callback_handler_map

    @staticmethod
    async def _ack_ignored(ws: Any, frame: dict[str, Any]) -> None:
        headers = frame.get("headers")
        message_id = headers.get("messageId") if isinstance(headers, dict) else None
        if not message_id:
            log.warning("dingtalk: frame without messageId cannot be acked")
            return
        ack = {
            "code": 200,
            "headers": {"messageId": message_id, "contentType": "application/json"},
            "message": "ignored",
            "data": json.dumps({}),
        }
        with contextlib.suppress(Exception):  # closed socket: nothing more to do
            await ws.send(json.dumps(ack))


def frame_problem(frame: dict[str, Any]) -> str | None:
    """Why a decoded frame must not reach the SDK, or None. The SDK reads `data` with an unbounded
    json.loads and the header times with int() (which takes "nan" as an error and inf as a crash),
    so both are checked here with the bounded readers first."""
    headers = frame.get("headers", {})
    if not isinstance(headers, dict):
        return "headers is not an object"
    for name in _INTEGER_HEADERS:
        if name in headers:
            try:
                unix_millis(headers[name])
            except ValueError:
                return f"headers.{name} is not an integer time"
    data = frame.get("data")
    if isinstance(data, str) and data:
        try:
            loads_bounded(data)
        except UnsafePayload as exc:
            return f"data: {exc}"
    return None
