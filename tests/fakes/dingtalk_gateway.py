"""A fake DingTalk on 127.0.0.1: the Stream gateway and the OpenAPI endpoints the adapter uses.

Point the SDK and the adapter at it with `DINGTALK_OPENAPI_ENDPOINT=<gateway.base_url>`.

Stream: `POST /v1.0/gateway/connections/open` answers `{endpoint, ticket}` like DingTalk; the
websocket at that endpoint pushes frames in the SDK's frame format (specVersion, type
SYSTEM/EVENT/CALLBACK, headers with messageId/topic/..., `data` as a JSON *string*) and records the
acks (`{code, headers.messageId, message, data}`). `drop_connection()` closes the socket mid-flow;
`lose_acks` drops it when a given frame's ack arrives (the ack is lost with it); with
`redeliver_unacked` the next connection gets every frame whose ack never came back, as the
platform does for events. `ack_observers` see each ack as it arrives.

OpenAPI: access token, robot 1:1 and group messages, card createAndDeliver/update, DING, message
file download. Every call is recorded; `fail(path, status)` queues failures, `token_failures`
makes the token endpoint fail, `revoke_tokens()` makes current tokens answer 401. `delivered`
holds the robot messages DingTalk accepted; `messages_to(user)` decodes them (`RobotOut`: text,
title, buttons). `DingTalkUser` chats with the bot like a person on a phone: text, pictures, and
button presses (a `dtmd://…sendMessage` button makes the client send its command text).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import WSMsgType, web

from tests.fakes.huge_body import HugeBody

TOPIC_ROBOT = "/v1.0/im/bot/messages/get"
TOPIC_CARD = "/v1.0/card/instances/callback"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


_MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\((dtmd://[^)\s]+)\)")


@dataclass(frozen=True)
class Button:
    label: str
    url: str

    @property
    def content(self) -> str:
        """What the DingTalk client sends to the bot when the button is pressed."""
        query = parse_qs(urlsplit(self.url).query)
        return query["content"][0]


@dataclass(frozen=True)
class RobotOut:
    """One robot message as DingTalk would show it: msgKey, its parameters and its buttons."""

    msg_key: str
    param: dict[str, Any]

    @classmethod
    def of(cls, recorded: Recorded) -> RobotOut:
        return cls(recorded.body["msgKey"], json.loads(recorded.body["msgParam"]))

    @property
    def text(self) -> str:
        return str(self.param.get("content") or self.param.get("text") or "")

    @property
    def title(self) -> str:
        return str(self.param.get("title") or "")

    @property
    def buttons(self) -> list[Button]:
        if self.msg_key == "sampleActionCard":
            return [Button(self.param["singleTitle"], self.param["singleURL"])]
        found = []
        for i in range(1, 6):
            if f"actionURL{i}" in self.param:
                found.append(Button(self.param[f"actionTitle{i}"], self.param[f"actionURL{i}"]))
        found += [Button(label, url) for label, url in _MARKDOWN_LINK.findall(self.text)]
        return found

    def button(self, label_part: str) -> Button:
        matches = [b for b in self.buttons if label_part in b.label]
        assert len(matches) == 1, (label_part, self.buttons)
        return matches[0]


@dataclass
class _Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


# --- frame builders (the platform's wire format, as dingtalk_stream.frames reads it) ---


def _headers(topic: str, message_id: str | None) -> dict[str, str]:
    return {
        "appId": "fake-app",
        "connectionId": "fake-conn",
        "contentType": "application/json",
        "messageId": message_id or uuid.uuid4().hex,
        "time": str(int(time.time() * 1000)),
        "topic": topic,
    }


def callback_frame(topic: str, data: dict[str, Any] | str, message_id: str | None = None) -> dict[str, Any]:
    return {
        "specVersion": "1.0",
        "type": "CALLBACK",
        "headers": _headers(topic, message_id),
        "data": data if isinstance(data, str) else json.dumps(data, ensure_ascii=False),
    }


def event_frame(event_type: str, data: dict[str, Any], event_id: str, message_id: str | None = None) -> dict[str, Any]:
    headers = _headers(event_type, message_id)
    headers.update(
        {
            "eventBornTime": str(int(time.time() * 1000)),
            "eventCorpId": "ding-corp",
            "eventId": event_id,
            "eventType": event_type,
            "eventUnifiedAppId": "fake-unified-app",
        }
    )
    return {"specVersion": "1.0", "type": "EVENT", "headers": headers, "data": json.dumps(data)}


def system_frame(topic: str, message_id: str | None = None) -> dict[str, Any]:
    return {"specVersion": "1.0", "type": "SYSTEM", "headers": _headers(topic, message_id), "data": "{}"}


def robot_message(
    *,
    msg_id: str,
    sender: str = "user-1",
    text: str | None = None,
    download_code: str | None = None,
    conversation_type: str = "1",
    conversation_id: str = "cid-single",
    at_users: list[str] | None = None,
) -> dict[str, Any]:
    """A robot message payload with the fields DingTalk sends (see dingtalk_stream.ChatbotMessage)."""
    data: dict[str, Any] = {
        "conversationId": conversation_id,
        "conversationType": conversation_type,
        "chatbotCorpId": "ding-corp",
        "chatbotUserId": "$:LWCP_v1:$bot",
        "msgId": msg_id,
        "senderNick": "张三",
        "isAdmin": False,
        "senderStaffId": sender,
        "senderId": f"$:LWCP_v1:${sender}",
        "senderCorpId": "ding-corp",
        "sessionWebhookExpiredTime": int(time.time() * 1000) + 90 * 60 * 1000,
        "createAt": int(time.time() * 1000),
        "robotCode": "fake-robot",
        "sessionWebhook": "http://127.0.0.1:9/robot/sendBySession?session=x",
        "isInAtList": conversation_type == "2",
    }
    if conversation_type == "2":
        data["conversationTitle"] = "设备群"
        data["atUsers"] = [{"dingtalkId": d} for d in (at_users or ["$:LWCP_v1:$bot"])]
    if download_code is not None:
        data["msgtype"] = "picture"
        data["content"] = {"downloadCode": download_code, "pictureDownloadCode": "pic-" + download_code}
    else:
        data["msgtype"] = "text"
        data["text"] = {"content": text or ""}
    return data


def card_callback(*, out_track_id: str, user_id: str, params: dict[str, Any], action_ids: list[str]) -> dict[str, Any]:
    return {
        "corpId": "ding-corp",
        "userId": user_id,
        "outTrackId": out_track_id,
        "type": "actionCallback",
        "spaceType": "IM_ROBOT",
        "spaceId": user_id,
        "userIdType": 1,
        "extension": "{}",
        "content": json.dumps({"cardPrivateData": {"actionIds": action_ids, "params": params}}),
    }


class FakeDingTalkGateway:
    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[Recorded] = []
        self.opens: list[dict[str, Any]] = []
        self.open_headers: list[dict[str, str]] = []
        self.acks: list[dict[str, Any]] = []
        # Called with each ack as it arrives, before it is recorded (e.g. to look at the database then).
        self.ack_observers: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        self.redeliver_unacked = False
        # Frame ids whose ack is lost in transit: the gateway drops the connection when it arrives.
        self.lose_acks: set[str] = set()
        self.lost_acks: list[dict[str, Any]] = []
        self.token_failures = 0
        self.ding_available = True
        self.files: dict[str, bytes] = {}
        self.huge_files: dict[str, HugeBody] = {}  # download code → a body streamed far past any cap
        # Robot messages DingTalk accepted (1:1 and group), in order; DINGs accepted.
        self.delivered: list[Recorded] = []
        self.dings: list[Recorded] = []
        self.file_downloads: list[str] = []
        self._runner: web.AppRunner | None = None
        self._ws: web.WebSocketResponse | None = None
        self._tickets: set[str] = set()
        self._tokens: set[str] = set()
        self._failures: dict[str, list[_Failure]] = {}
        self._pending: list[dict[str, Any]] = []
        self._unacked: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self.connections = 0
        # More routes on the same app (tests/fakes/directory.py: the oapi address book), added at start().
        self.extra_routes: list[Callable[[web.Application], None]] = []

    # --- lifecycle ---

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1.0/gateway/connections/open", self._open)
        app.router.add_get("/connect", self._connect)
        app.router.add_post("/v1.0/oauth2/accessToken", self._token)
        app.router.add_post("/v1.0/robot/oToMessages/batchSend", self._oto)
        app.router.add_post("/v1.0/robot/groupMessages/send", self._group)
        app.router.add_post("/v1.0/card/instances/createAndDeliver", self._card_create)
        app.router.add_put("/v1.0/card/instances", self._card_update)
        app.router.add_post("/v1.0/robot/ding/send", self._ding)
        app.router.add_post("/v1.0/robot/messageFiles/download", self._media)
        app.router.add_get("/files/{code}", self._file)
        for add_routes in self.extra_routes:
            add_routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- stream control ---

    async def push(self, frame: dict[str, Any] | str) -> None:
        """Send a frame now, or as soon as a client is connected."""
        if isinstance(frame, dict):
            self._unacked[frame["headers"]["messageId"]] = frame
        if self._ws is None or self._ws.closed:
            self._pending.append(frame if isinstance(frame, dict) else {"__raw__": frame})
            return
        await self._send(frame)

    async def _send(self, frame: dict[str, Any] | str) -> None:
        assert self._ws is not None
        if isinstance(frame, dict) and "__raw__" in frame:
            frame = frame["__raw__"]
        await self._ws.send_str(frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False))

    async def drop_connection(self) -> None:
        if self._ws is not None:
            await self._ws.close(code=1011, message=b"gateway restart")

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(waiter(), timeout)

    async def wait_connections(self, count: int, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.connections >= count and self._ws is not None and not self._ws.closed, timeout)

    async def wait_ack(self, message_id: str, timeout: float = 5.0) -> dict[str, Any]:
        await self.wait_for(lambda: any(a["headers"].get("messageId") == message_id for a in self.acks), timeout)
        return next(a for a in self.acks if a["headers"].get("messageId") == message_id)

    def acks_for(self, message_id: str) -> list[dict[str, Any]]:
        return [a for a in self.acks if a["headers"].get("messageId") == message_id]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- OpenAPI control ---

    def fail(
        self,
        path: str,
        status: int,
        *,
        times: int = 1,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        failure = _Failure(status, body or {"code": f"fake.{status}", "message": "injected failure"}, headers or {})
        self._failures.setdefault(path, []).extend([failure] * times)

    def revoke_tokens(self) -> None:
        self._tokens.clear()

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    # --- stream endpoints ---

    async def _open(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.opens.append(body)
        self.open_headers.append(dict(request.headers))
        await self._notify()
        if not body.get("clientId") or not body.get("clientSecret"):
            return web.json_response({"code": "invalidClient"}, status=400)
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return web.json_response({"endpoint": f"ws://127.0.0.1:{request.url.port}/connect", "ticket": ticket})

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=403)
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        self.connections += 1
        resend = list(self._unacked.values()) if self.redeliver_unacked else []
        pending, self._pending = self._pending, []
        for frame in resend + [f for f in pending if f not in resend]:
            await self._send(frame)
        await self._notify()
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                ack = json.loads(message.data)
                lost_id = ack.get("headers", {}).get("messageId")
                if lost_id in self.lose_acks:
                    # The ack dies with the connection: the frame stays unacked (redelivered if enabled).
                    self.lose_acks.discard(lost_id)
                    self.lost_acks.append(ack)
                    await ws.close(code=1011, message=b"connection reset")
                    break
                for observe in self.ack_observers:
                    await observe(ack)
                self.acks.append(ack)
                self._unacked.pop(ack.get("headers", {}).get("messageId"), None)
                await self._notify()
        await self._notify()
        return ws

    # --- OpenAPI endpoints ---

    async def _record(self, request: web.Request) -> Recorded:
        try:
            body = await request.json()
        except ValueError:
            body = None
        recorded = Recorded(request.method, request.path, dict(request.headers), body)
        self.requests.append(recorded)
        await self._notify()
        return recorded

    def _injected(self, path: str) -> web.Response | None:
        queue = self._failures.get(path)
        if queue:
            failure = queue.pop(0)
            return web.json_response(failure.body, status=failure.status, headers=failure.headers)
        return None

    def _unauthorized(self, recorded: Recorded) -> web.Response | None:
        if recorded.headers.get("x-acs-dingtalk-access-token") not in self._tokens:
            return web.json_response({"code": "InvalidAuthentication", "message": "token invalid"}, status=401)
        return None

    async def _token(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if self.token_failures > 0:
            self.token_failures -= 1
            return web.json_response({"code": "ServiceUnavailable", "message": "try later"}, status=503)
        if (injected := self._injected(request.path)) is not None:
            return injected
        if not recorded.body or not recorded.body.get("appKey") or not recorded.body.get("appSecret"):
            return web.json_response({"code": "invalidParameter"}, status=400)
        token = f"tok-{next(self._ids)}"
        self._tokens.add(token)
        return web.json_response({"accessToken": token, "expireIn": 7200})

    async def _api(self, request: web.Request) -> tuple[Recorded, web.Response | None]:
        recorded = await self._record(request)
        return recorded, self._injected(request.path) or self._unauthorized(recorded)

    async def _delivered(self, recorded: Recorded) -> None:
        self.delivered.append(recorded)
        await self._notify()

    def messages_to(self, user_id: str) -> list[RobotOut]:
        """Robot messages delivered 1:1 to this user, oldest first."""
        return [
            RobotOut.of(r)
            for r in self.delivered
            if r.path == "/v1.0/robot/oToMessages/batchSend" and user_id in (r.body.get("userIds") or [])
        ]

    def messages_to_group(self, conversation_id: str) -> list[RobotOut]:
        return [
            RobotOut.of(r)
            for r in self.delivered
            if r.path == "/v1.0/robot/groupMessages/send" and r.body.get("openConversationId") == conversation_id
        ]

    async def _oto(self, request: web.Request) -> web.Response:
        recorded, early = await self._api(request)
        if early is not None:
            return early
        json.loads(recorded.body["msgParam"])  # must be a JSON string, as DingTalk requires
        await self._delivered(recorded)
        return web.json_response(
            {"processQueryKey": f"pqk-{next(self._ids)}", "invalidStaffIdList": [], "flowControlledStaffIdList": []}
        )

    async def _group(self, request: web.Request) -> web.Response:
        recorded, early = await self._api(request)
        if early is not None:
            return early
        json.loads(recorded.body["msgParam"])
        await self._delivered(recorded)
        return web.json_response({"processQueryKey": f"pqk-{next(self._ids)}"})

    async def _card_create(self, request: web.Request) -> web.Response:
        recorded, early = await self._api(request)
        if early is not None:
            return early
        params = recorded.body["cardData"]["cardParamMap"]
        if not all(isinstance(v, str) for v in params.values()):
            return web.json_response(
                {"code": "invalidParameter", "message": "cardParamMap values must be strings"}, status=400
            )
        result = {
            "outTrackId": recorded.body["outTrackId"],
            "deliverResults": [{"spaceType": "IM_ROBOT", "spaceId": "x", "success": True, "carrierId": "c-1"}],
        }
        return web.json_response({"success": True, "result": result})

    async def _card_update(self, request: web.Request) -> web.Response:
        _, early = await self._api(request)
        return early or web.json_response({"success": True, "result": True})

    async def _ding(self, request: web.Request) -> web.Response:
        recorded, early = await self._api(request)
        if early is not None:
            return early
        if not self.ding_available:
            return web.json_response({"code": "Forbidden.AccessDenied", "message": "专业版功能"}, status=403)
        self.dings.append(recorded)
        await self._notify()
        return web.json_response({"openDingId": f"ding-{next(self._ids)}"})

    async def _media(self, request: web.Request) -> web.Response:
        recorded, early = await self._api(request)
        if early is not None:
            return early
        code = recorded.body.get("downloadCode")
        if code not in self.files and code not in self.huge_files:
            return web.json_response({"code": "invalidParameter.downloadCode"}, status=400)
        return web.json_response({"downloadUrl": f"{self.base_url}/files/{code}"})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self.file_downloads.append(request.match_info["code"])
        if (huge := self.huge_files.get(request.match_info["code"])) is not None:
            return await huge.serve(request)
        data = self.files.get(request.match_info["code"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/jpeg")


class DingTalkUser:
    """A DingTalk user chatting 1:1 with the robot through the fake gateway (like PlaygroundUser)."""

    def __init__(self, gateway: FakeDingTalkGateway, staff_id: str, nick: str = "张三") -> None:
        self.gateway = gateway
        self.staff_id = staff_id
        self.nick = nick
        self._seq = itertools.count(1)

    def _ids(self) -> str:
        return f"{self.staff_id}-{next(self._seq)}-{uuid.uuid4().hex[:8]}"

    async def say(self, text: str, *, msg_id: str | None = None, frame_id: str | None = None) -> str:
        """Push a text message; returns the frame's messageId (to wait for its ack)."""
        msg_id = msg_id or "msg-" + self._ids()
        data = robot_message(msg_id=msg_id, sender=self.staff_id, text=text)
        data["senderNick"] = self.nick
        frame = callback_frame(TOPIC_ROBOT, data, frame_id or "frame-" + self._ids())
        await self.gateway.push(frame)
        return str(frame["headers"]["messageId"])

    async def send_picture(self, content: bytes) -> str:
        code = "dl-" + self._ids()
        self.gateway.files[code] = content
        data = robot_message(msg_id="msg-" + self._ids(), sender=self.staff_id, download_code=code)
        frame = callback_frame(TOPIC_ROBOT, data, "frame-" + self._ids())
        await self.gateway.push(frame)
        return str(frame["headers"]["messageId"])

    async def press(self, button: Button) -> str:
        """The client sends the button's command text as an ordinary message."""
        return await self.say(button.content)

    def received(self) -> list[RobotOut]:
        return self.gateway.messages_to(self.staff_id)

    async def wait_message(
        self, predicate: Callable[[RobotOut], bool] = lambda m: True, *, after: int = 0, timeout: float = 10.0
    ) -> RobotOut:
        """The first message at index >= `after` matching `predicate`, waiting for it to arrive."""

        def found() -> RobotOut | None:
            return next((m for m in self.received()[after:] if predicate(m)), None)

        try:
            await self.gateway.wait_for(lambda: found() is not None, timeout)
        except TimeoutError:
            seen = [(m.msg_key, m.title, m.text[:80]) for m in self.received()[after:]]
            raise AssertionError(f"no matching message for {self.staff_id} within {timeout}s; got {seen}") from None
        message = found()
        assert message is not None
        return message
