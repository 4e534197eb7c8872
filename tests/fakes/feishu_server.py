"""A fake Feishu on 127.0.0.1: the Open API, the long-connection gateway, and event pushes.

Speaks the real wire format (paths, Bearer tenant tokens, `code`/`msg`/`data` envelopes,
uuid dedupe, 429 with `x-ogw-ratelimit-reset`) and records every request. The long
connection is lark's own protocol: POST /callback/ws/endpoint hands out a websocket URL,
events go down as protobuf `Frame`s (lark_oapi.ws.pb) and the client answers on the same
socket. Events pushed over HTTP are encrypted and signed exactly as Feishu does.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

from adapters.feishu import crypto
from tests.fakes.huge_body import HugeBody

APP_ID = "cli_test_app"
APP_SECRET = "test-secret"
BOT_OPEN_ID = "ou_bot_0001"
IMAGE_BYTES = b"\x89PNG\r\n\x1a\nfake-image-bytes"
WS_SERVICE_ID = 7


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class Sent:
    """A message as Feishu holds it now: created, then maybe patched."""

    message_id: str
    receive_id: str
    receive_id_type: str
    msg_type: str
    content: dict[str, Any]

    @property
    def text(self) -> str:
        """Readable text of a text/post message, or the card's texts (title, facts, notes)."""
        if self.msg_type == "text":
            return str(self.content.get("text", ""))
        return "\n".join(_texts(self.content))

    @property
    def card(self) -> dict[str, Any] | None:
        return self.content if self.msg_type == "interactive" else None

    def buttons(self) -> list[dict[str, Any]]:
        """Callback values of the card's buttons: [{"card_id", "action", "label"}]."""
        found: list[dict[str, Any]] = []
        for node in _nodes(self.content):
            if node.get("tag") == "button":
                for behavior in node.get("behaviors", []):
                    if behavior.get("type") == "callback":
                        found.append({**behavior["value"], "label": node["text"]["content"]})
        return found

    def form_names(self) -> list[str]:
        return [n["name"] for n in _nodes(self.content) if n.get("tag") in {"checker", "select_static", "input"}]


def _nodes(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_nodes(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_nodes(item))
    return found


def _texts(content: dict[str, Any]) -> list[str]:
    return [str(n["content"] if "content" in n else n["text"]) for n in _nodes(content)
            if n.get("tag") in {"plain_text", "markdown", "text"} and isinstance(n.get("content", n.get("text")), str)]


@dataclass
class Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    path_prefix: str = "/open-apis/im/"


class FakeFeishu:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.messages: dict[str, dict[str, Any]] = {}  # message_id → last create/patch body
        self.urgent: list[tuple[str, list[str]]] = []
        self.token_fetches = 0
        self.token_failures = 0  # how many token requests to refuse next
        self.token_expire_s = 7200
        self.images: dict[str, bytes] = {}  # image_key → bytes users "sent"; others get IMAGE_BYTES
        self.huge_images: dict[str, HugeBody] = {}  # image_key → a body streamed far past any cap
        self._failures: list[Failure] = []
        self._tokens: set[str] = set()
        self._uuids: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._open = asyncio.Event()  # cleared by hold(): Open API answers wait (a slow Feishu)
        self._open.set()
        self.url = ""
        # Long connection
        self.ws_endpoint_requests: list[dict[str, Any]] = []
        self.ws_connected = asyncio.Event()
        self.ws_connections = 0
        self.ws_disconnects = 0
        self._ws: web.WebSocketResponse | None = None
        self._ws_answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # More routes on the same app (tests/fakes/directory.py: contact v3), added at start().
        self.extra_routes: list[Callable[[web.Application], None]] = []

    # --- failure switches ---
    def fail_next(
        self,
        status: int,
        code: int = 0,
        msg: str = "",
        headers: dict[str, str] | None = None,
        times: int = 1,
        path_prefix: str = "/open-apis/im/",
    ) -> None:
        for _ in range(times):
            self._failures.append(Failure(status, {"code": code, "msg": msg}, headers or {}, path_prefix))

    def rate_limit_next(self, reset_s: int = 7) -> None:
        self.fail_next(429, 99991400, "request trigger frequency limit", {"x-ogw-ratelimit-reset": str(reset_s)})

    def server_error_next(self, times: int = 1) -> None:
        self.fail_next(500, 1, "internal error", times=times)

    @property
    def pending_failures(self) -> int:
        return len(self._failures)

    def invalidate_tokens(self) -> None:
        """Feishu forgets every issued tenant token (as after expiry)."""
        self._tokens.clear()

    def hold(self) -> None:
        """Open API calls under /open-apis/im/ wait until release()."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def calls(self, method: str, path_contains: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]

    def sent(self, to: str | None = None) -> list[Sent]:
        """Messages created (in order), in their current state, optionally to one receive_id."""
        out = []
        for message_id, body in self.messages.items():
            if to is None or body["receive_id"] == to:
                out.append(Sent(message_id, body["receive_id"], body.get("receive_id_type", ""), body["msg_type"],
                                json.loads(body["content"])))
        return out

    def patches(self, message_id: str) -> list[dict[str, Any]]:
        """Contents PATCHed onto a message, oldest first."""
        return [json.loads(r.json["content"]) for r in self.calls("PATCH", f"/im/v1/messages/{message_id}")
                if r.path.endswith(message_id)]

    # --- server ---
    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        app.router.add_get("/open-apis/bot/v3/info", self._bot_info)
        app.router.add_post("/open-apis/im/v1/messages", self._create)
        app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", self._reply)
        app.router.add_patch("/open-apis/im/v1/messages/{message_id}", self._patch)
        app.router.add_patch("/open-apis/im/v1/messages/{message_id}/urgent_app", self._urgent)
        app.router.add_get("/open-apis/im/v1/messages/{message_id}/resources/{file_key}", self._resource)
        app.router.add_post("/callback/ws/endpoint", self._ws_endpoint)
        app.router.add_get("/ws", self._ws_socket)
        app.middlewares.append(self._record)
        for add_routes in self.extra_routes:
            add_routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        self._open.set()
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        payload = json.loads(body) if body else None
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers), payload)
        )
        if request.path.startswith("/open-apis/im/"):
            await self._open.wait()
        for failure in self._failures:
            if request.path.startswith(failure.path_prefix):
                self._failures.remove(failure)
                return web.json_response(failure.body, status=failure.status, headers=failure.headers)
        if request.path.startswith("/open-apis/") and request.path != "/open-apis/auth/v3/tenant_access_token/internal":
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self._tokens:
                return web.json_response(
                    {"code": 99991663, "msg": "Invalid access token for authorization."}, status=400
                )
        return await handler(request)

    async def _token(self, request: web.Request) -> web.Response:
        self.token_fetches += 1
        body = await request.json()
        if self.token_failures > 0:
            self.token_failures -= 1
            return web.json_response({"code": 10014, "msg": "app secret invalid"}, status=400)
        if body.get("app_id") != APP_ID or body.get("app_secret") != APP_SECRET:
            return web.json_response({"code": 10014, "msg": "app secret invalid"}, status=400)
        token = "t-" + secrets.token_hex(8)
        self._tokens.add(token)
        return web.json_response({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": self.token_expire_s})

    async def _bot_info(self, request: web.Request) -> web.Response:
        return web.json_response({"code": 0, "msg": "ok", "bot": {"open_id": BOT_OPEN_ID, "app_name": "工单助手"}})

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.query.get("receive_id_type") not in {"open_id", "chat_id", "union_id", "user_id", "email"}:
            return web.json_response({"code": 99992402, "msg": "field validation failed"}, status=400)
        if body.get("msg_type") not in {"text", "post", "interactive", "image"}:
            return web.json_response({"code": 230001, "msg": "invalid msg_type"}, status=400)
        uuid = body.get("uuid")
        if uuid and uuid in self._uuids:  # Feishu: same uuid within 1 h → one message
            return web.json_response({"code": 0, "msg": "success", "data": {"message_id": self._uuids[uuid]}})
        message_id = f"om_{next(self._ids):06d}"
        if uuid:
            self._uuids[uuid] = message_id
        self.messages[message_id] = {**body, "receive_id_type": request.query["receive_id_type"]}
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": message_id}})

    async def _reply(self, request: web.Request) -> web.Response:
        """Reply to a message (in its chat): recorded like a created message with receive_id
        "reply:<message id>", since this fake does not know the chats of pushed events."""
        body = await request.json()
        if body.get("msg_type") not in {"text", "post", "interactive", "image"}:
            return web.json_response({"code": 230001, "msg": "invalid msg_type"}, status=400)
        parent = request.match_info["message_id"]
        if not parent.startswith("om_"):
            return web.json_response({"code": 230001, "msg": "invalid message_id"}, status=400)
        uuid = body.get("uuid")
        if uuid and uuid in self._uuids:
            return web.json_response({"code": 0, "msg": "success", "data": {"message_id": self._uuids[uuid]}})
        message_id = f"om_{next(self._ids):06d}"
        if uuid:
            self._uuids[uuid] = message_id
        self.messages[message_id] = {**body, "receive_id": f"reply:{parent}", "receive_id_type": "reply"}
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": message_id}})

    async def _patch(self, request: web.Request) -> web.Response:
        message_id = request.match_info["message_id"]
        if message_id not in self.messages:
            return web.json_response({"code": 230001, "msg": "message not found"}, status=400)
        body = await request.json()
        card = json.loads(body["content"])
        if not card.get("config", {}).get("update_multi"):
            return web.json_response({"code": 230099, "msg": "card must be update_multi"}, status=400)
        self.messages[message_id] = {**self.messages[message_id], "content": body["content"]}
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def _urgent(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.urgent.append((request.match_info["message_id"], list(body.get("user_id_list", []))))
        return web.json_response({"code": 0, "msg": "success", "data": {"invalid_user_id_list": []}})

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("type") != "image":
            return web.json_response({"code": 234001, "msg": "invalid type"}, status=400)
        if (huge := self.huge_images.get(request.match_info["file_key"])) is not None:
            return await huge.serve(request)
        body = self.images.get(request.match_info["file_key"], IMAGE_BYTES)
        return web.Response(body=body, content_type="image/png")


    # --- long connection: lark.ws.Client's endpoint discovery and websocket ---

    async def _ws_endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.ws_endpoint_requests.append(body)
        if body.get("AppID") != APP_ID or body.get("AppSecret") != APP_SECRET:
            return web.json_response({"code": 514, "msg": "auth failed"})
        host = request.host
        config = {"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0, "PingInterval": 120}
        url = f"ws://{host}/ws?device_id=dev-{len(self.ws_endpoint_requests)}&service_id={WS_SERVICE_ID}"
        return web.json_response({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": config}})

    async def _ws_socket(self, request: web.Request) -> web.WebSocketResponse:
        from lark_oapi.ws.pb.pbbp2_pb2 import Frame

        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        self.ws_connections += 1
        self.ws_connected.set()
        try:
            async for msg in ws:
                if msg.type != web.WSMsgType.BINARY:
                    continue
                frame = Frame()
                frame.ParseFromString(msg.data)
                headers = {h.key: h.value for h in frame.headers}
                if frame.method == 0 and headers.get("type") == "ping":
                    await ws.send_bytes(_frame(0, {"type": "pong"}, b"").SerializeToString())
                elif frame.method == 1:  # the client's answer to a data frame we pushed
                    future = self._ws_answers.pop(headers.get("message_id", ""), None)
                    if future is not None and not future.done():
                        future.set_result(json.loads(frame.payload))
        finally:
            if self._ws is ws:
                self._ws = None
                self.ws_connected.clear()
            self.ws_disconnects += 1
        return ws

    async def ws_push(self, payload: dict[str, Any], timeout_s: float = 10.0) -> tuple[int, Any]:
        """Send one event down the long connection; (code, decoded answer data or None)."""
        if self._ws is None:
            raise AssertionError("no long connection is open")
        message_id = secrets.token_hex(8)
        headers = {"type": "event", "message_id": message_id, "trace_id": secrets.token_hex(8), "sum": "1",
                   "seq": "0"}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._ws_answers[message_id] = future
        frame = _frame(1, headers, json.dumps(payload, ensure_ascii=False).encode())
        await self._ws.send_bytes(frame.SerializeToString())
        answer = await asyncio.wait_for(future, timeout_s)
        data = answer.get("data")
        return int(answer.get("code", 0)), json.loads(base64.b64decode(data)) if data else None

    async def wait_for(self, probe: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> Any:
        return await eventually(probe, timeout_s, what)


async def eventually(probe: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> Any:
    """Poll `probe` (sync or async) until it returns something truthy; deliveries are asynchronous."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or probe}")
        await asyncio.sleep(0.02)


def _frame(method: int, headers: dict[str, str], payload: bytes) -> Any:
    from lark_oapi.ws.pb.pbbp2_pb2 import Frame

    frame = Frame()
    frame.SeqID, frame.LogID, frame.service, frame.method = 0, 0, WS_SERVICE_ID, method
    for key, value in headers.items():
        header = frame.headers.add()
        header.key, header.value = key, value
    frame.payload = payload
    return frame


# --- inbound: what Feishu POSTs to /feishu/events ---


async def push_event(
    client: TestClient[Any, Any], payload: dict[str, Any], encrypt_key: str, **signing: Any
) -> tuple[int, Any]:
    """POST one event to the app's /feishu/events as Feishu does; (status, JSON answer)."""
    body, headers = signed_event(payload, encrypt_key, **signing)
    resp = await client.post("/feishu/events", data=body, headers=headers)
    try:
        answer = await resp.json(content_type=None)
    finally:
        resp.release()
    return resp.status, answer


def signed_event(
    payload: dict[str, Any],
    encrypt_key: str,
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an encrypted, signed event push (as Feishu sends it)."""
    body = json.dumps({"encrypt": crypto.encrypt(json.dumps(payload, ensure_ascii=False), encrypt_key)}).encode()
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or secrets.token_hex(8)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": crypto.signature(timestamp, nonce, encrypt_key, body),
    }
    return body, headers


def event_envelope(event_type: str, event: dict[str, Any], token: str, event_id: str | None = None) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id or secrets.token_hex(16),
            "token": token,
            "create_time": str(int(time.time() * 1000)),
            "event_type": event_type,
            "tenant_key": "tenant_x",
            "app_id": APP_ID,
        },
        "event": event,
    }


def message_event(
    token: str,
    *,
    message_type: str = "text",
    content: dict[str, Any] | None = None,
    sender_open_id: str = "ou_customer_1",
    chat_type: str = "p2p",
    chat_id: str = "oc_chat_1",
    mentions: list[dict[str, Any]] | None = None,
    event_id: str | None = None,
    message_id: str = "om_in_1",
) -> dict[str, Any]:
    event = {
        "sender": {
            "sender_id": {"open_id": sender_open_id, "union_id": "on_x", "user_id": "u_x"},
            "sender_type": "user",
            "tenant_key": "tenant_x",
        },
        "message": {
            "message_id": message_id,
            "create_time": str(int(time.time() * 1000)),
            "chat_id": chat_id,
            "chat_type": chat_type,
            "message_type": message_type,
            "content": json.dumps(content if content is not None else {"text": "你好"}, ensure_ascii=False),
            "mentions": mentions or [],
        },
    }
    return event_envelope("im.message.receive_v1", event, token, event_id)


def card_action_event(
    token: str,
    *,
    value: dict[str, Any],
    form_value: dict[str, Any] | None = None,
    operator_open_id: str = "ou_customer_1",
    open_message_id: str = "om_card_1",
    callback_token: str = "c-callback-token",
    event_id: str | None = None,
) -> dict[str, Any]:
    action: dict[str, Any] = {"value": value, "tag": "button"}
    if form_value is not None:
        action["form_value"] = form_value
        action["name"] = "action_submit"
    event = {
        "operator": {"tenant_key": "tenant_x", "open_id": operator_open_id, "union_id": "on_x"},
        "token": callback_token,
        "action": action,
        "host": "im_message",
        "context": {"open_message_id": open_message_id, "open_chat_id": "oc_chat_1"},
    }
    return event_envelope("card.action.trigger", event, token, event_id)
