"""A fake 微信客服 API on top of the fake WeCom server (tests/fakes/wecom_server.py).

It speaks the kf wire protocol: gettoken with the kf secret (its own tokens), kf/sync_msg
(per-account message log, cursor, has_more, limit, the callback's Token), kf/send_msg with
the 5-in-48-h rule enforced as WeCom does (a 6th answers errcode 95001; 48 h after the
customer's last message 95002), kf/send_msg_on_event (welcome_code once, within 20 s),
kf/add_contact_way and media/get (the parent's, with either token). `servicer_message` puts a
human servicer's message (origin 5) in the log, as sync_msg returns those.

`WeChatCustomer` is one WeChat user: what they do is logged on the fake and announced to our
`/wecom/callback` as a sealed, signed kf_msg_or_event exactly as WeCom sends it.
"""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.wecom_server import CallbackSigner, FakeWeCom, _err, _xml

# Our reading of WeCom's errcodes (open.work.weixin.qq.com global return codes):
ERR_INVALID_OPEN_KFID = 95000  # 不合法的open_kfid
ERR_SEND_COUNT_LIMIT = 95001  # 发送客服消息次数限制 (the 6th within 48 h)
ERR_SEND_TIME_LIMIT = 95002  # 发送客服消息时间限制 (48 h after the customer's last message)
ERR_INVALID_TOKEN = 95007  # the sync token / welcome code is invalid or expired (UNVERIFIED exact code)
ERR_API_FORBIDDEN = 48002  # an app token on a kf/ API: only the kf secret's token may call them
BUDGET = 5
WINDOW_S = 48 * 3600
SYNC_TOKEN_TTL_S = 600
WELCOME_CODE_TTL_S = 20
_SCENE = re.compile(r"[0-9A-Za-z_-]{1,32}")


@dataclass
class FakeWeComKf(FakeWeCom):
    kf_secret: str = "kf-test-secret"
    accounts: set[str] = field(default_factory=lambda: {"wkSTORE0001"})
    kf_tokens: set[str] = field(default_factory=set)
    log: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # open_kfid -> messages, oldest first
    sync_tokens: dict[str, float] = field(default_factory=dict)  # token -> issued at
    welcome_codes: dict[str, tuple[float, bool]] = field(default_factory=dict)  # code -> (issued, used)
    # (open_kfid, external_userid) -> [last customer message time, sends since]
    windows: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    contact_ways: dict[tuple[str, str], str] = field(default_factory=dict)
    kf_sent: list[dict[str, Any]] = field(default_factory=list)  # send_msg bodies answered ok
    on_event_sent: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (errcode, body)
    sync_calls: list[dict[str, Any]] = field(default_factory=list)
    fail_sync_calls: set[int] = field(default_factory=set)  # 1-based sync_msg calls answering HTTP 500
    kf_gettoken_calls: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.extra_routes.append(self._kf_routes)

    def _kf_routes(self, app: web.Application) -> None:
        app.router.add_post("/cgi-bin/kf/sync_msg", self._sync_msg)
        app.router.add_post("/cgi-bin/kf/send_msg", self._send_msg)
        app.router.add_post("/cgi-bin/kf/send_msg_on_event", self._send_on_event)
        app.router.add_post("/cgi-bin/kf/add_contact_way", self._add_contact_way)

    # --- what customers do -------------------------------------------------------------

    def _append(self, open_kfid: str, message: dict[str, Any]) -> str:
        msgid = message.setdefault("msgid", f"kfmsg{next(self._ids):08d}{secrets.token_hex(4)}")
        self.log.setdefault(open_kfid, []).append(message)
        return str(msgid)

    def customer_message(self, open_kfid: str, user: str, msgtype: str, body: dict[str, Any],
                         *, msgid: str | None = None) -> str:
        now = float(self.clock())
        self.windows[(open_kfid, user)] = [now, 0.0]
        message = {"open_kfid": open_kfid, "external_userid": user, "send_time": int(now), "origin": 3,
                   "msgtype": msgtype, msgtype: body}
        if msgid:
            message["msgid"] = msgid
        return self._append(open_kfid, message)

    def servicer_message(self, open_kfid: str, user: str, text: str) -> str:
        return self._append(open_kfid, {"open_kfid": open_kfid, "external_userid": user, "servicer_userid": "zhangsan",
                                        "send_time": int(self.clock()), "origin": 5, "msgtype": "text",
                                        "text": {"content": text}})

    def enter_session(self, open_kfid: str, user: str, *, scene: str = "", scene_param: str = "") -> str:
        code = "WELCOME_" + secrets.token_hex(8)
        self.welcome_codes[code] = (float(self.clock()), False)
        event = {"event_type": "enter_session", "open_kfid": open_kfid, "external_userid": user, "scene": scene,
                 "scene_param": scene_param, "welcome_code": code}
        self._append(open_kfid, {"send_time": int(self.clock()), "origin": 4, "msgtype": "event", "event": event})
        return code

    def issue_sync_token(self) -> str:
        token = "ENC" + secrets.token_urlsafe(24)
        self.sync_tokens[token] = float(self.clock())
        return token

    def callback_xml(self, open_kfid: str, token: str) -> str:
        """The decrypted kf_msg_or_event as WeCom sends it (no FromUserName, no AgentID)."""
        return _xml({"ToUserName": self.corp_id, "CreateTime": int(self.clock()), "MsgType": "event",
                     "Event": "kf_msg_or_event", "Token": token, "OpenKfId": open_kfid})

    # --- API -------------------------------------------------------------------------

    async def _gettoken(self, request: web.Request) -> web.Response:
        if request.query.get("corpsecret") != self.kf_secret or request.query.get("corpid") != self.corp_id:
            return await super()._gettoken(request)
        self._record(request, None)
        self.kf_gettoken_calls += 1
        if self.gettoken_errcode:
            return _err(self.gettoken_errcode, "gettoken refused")
        token = "kftok-" + secrets.token_hex(8)
        self.kf_tokens.add(token)
        self.tokens.add(token)  # media/get takes either token
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

    def _kf_gate(self, request: web.Request) -> web.Response | None:
        if (denied := self._gate(request)) is not None:
            return denied
        if request.query.get("access_token") not in self.kf_tokens:
            return _err(ERR_API_FORBIDDEN, "api forbidden: not the 微信客服 secret's token")
        return None

    async def _sync_msg(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        self.sync_calls.append(body)
        if len(self.sync_calls) in self.fail_sync_calls:
            return web.Response(status=500, text="internal error")
        if (denied := self._kf_gate(request)) is not None:
            return denied
        open_kfid = str(body.get("open_kfid") or "")
        if open_kfid not in self.accounts:
            return _err(ERR_INVALID_OPEN_KFID, "invalid open_kfid")
        token = body.get("token")
        if token is not None and float(self.clock()) - self.sync_tokens.get(str(token), -1e18) > SYNC_TOKEN_TTL_S:
            return _err(ERR_INVALID_TOKEN, "invalid token")
        cursor = str(body.get("cursor") or "")
        if cursor and not re.fullmatch(r"c\d+", cursor):
            return _err(40035, "invalid cursor")
        start = int(cursor[1:]) if cursor else 0
        limit = int(body.get("limit") or 1000)
        if not 1 <= limit <= 1000:
            return _err(40035, "invalid limit")
        messages = self.log.get(open_kfid, [])
        page = messages[start:start + limit]
        end = start + len(page)
        return web.json_response({"errcode": 0, "errmsg": "ok", "next_cursor": f"c{end}",
                                  "has_more": 1 if end < len(messages) else 0, "msg_list": page})

    def _valid_message(self, body: dict[str, Any]) -> web.Response | None:
        msgtype = body.get("msgtype")
        if msgtype not in {"text", "msgmenu", "image", "link", "location"} or not isinstance(body.get(msgtype), dict):
            return _err(40008, "invalid message type")
        if msgtype == "text" and not 0 < len(str(body["text"].get("content") or "").encode()) <= 2048:
            return _err(44004, "text content is empty or exceeds 2048 bytes")
        if msgtype == "msgmenu":
            menu = body["msgmenu"]
            for item in menu.get("list") or []:
                click = item.get("click") or {}
                if item.get("type") != "click" or not 1 <= len(str(click.get("id") or "").encode()) <= 64:
                    return _err(40035, "invalid menu item")
            if len(str(menu.get("head_content") or "").encode()) > 1024:
                return _err(40035, "head_content exceeds 1024 bytes")
        return None

    async def _send_msg(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        if (denied := self._kf_gate(request)) is not None:
            return denied
        open_kfid, user = str(body.get("open_kfid") or ""), str(body.get("touser") or "")
        if open_kfid not in self.accounts:
            return _err(ERR_INVALID_OPEN_KFID, "invalid open_kfid")
        if (invalid := self._valid_message(body)) is not None:
            return invalid
        window = self.windows.get((open_kfid, user))
        now = float(self.clock())
        if window is None or now - window[0] > WINDOW_S:
            self.refused.append((ERR_SEND_TIME_LIMIT, body))
            return _err(ERR_SEND_TIME_LIMIT, "send msg time limit: 48 hours after the customer's last message")
        if window[1] >= BUDGET:
            self.refused.append((ERR_SEND_COUNT_LIMIT, body))
            return _err(ERR_SEND_COUNT_LIMIT, "send msg count limit: 5 messages per customer message")
        window[1] += 1
        self.kf_sent.append(body)
        # Messages sent through kf/send_msg do not come back through sync_msg (a human servicer's do).
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": f"sent{next(self._ids):08d}"})

    async def _send_on_event(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        if (denied := self._kf_gate(request)) is not None:
            return denied
        code = str(body.get("code") or "")
        issued = self.welcome_codes.get(code)
        if issued is None or issued[1] or float(self.clock()) - issued[0] > WELCOME_CODE_TTL_S:
            self.refused.append((ERR_INVALID_TOKEN, body))
            return _err(ERR_INVALID_TOKEN, "invalid or used welcome code")
        if body.get("msgtype") not in {"text", "msgmenu"}:
            return _err(40008, "invalid message type")
        if (invalid := self._valid_message(body)) is not None:
            return invalid
        self.welcome_codes[code] = (issued[0], True)
        self.on_event_sent.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": f"evmsg{next(self._ids)}"})

    async def _add_contact_way(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        if (denied := self._kf_gate(request)) is not None:
            return denied
        open_kfid, scene = str(body.get("open_kfid") or ""), str(body.get("scene") or "")
        if open_kfid not in self.accounts:
            return _err(ERR_INVALID_OPEN_KFID, "invalid open_kfid")
        if scene and not _SCENE.fullmatch(scene):
            return _err(40035, "invalid scene")
        url = self.contact_ways.setdefault(
            (open_kfid, scene), f"https://work.weixin.qq.com/kfid/kfc{secrets.token_hex(8)}?enc_scene=ENC{scene}")
        return web.json_response({"errcode": 0, "errmsg": "ok", "url": url})

    # --- views -------------------------------------------------------------------------

    def sent_to(self, user: str) -> list[dict[str, Any]]:
        return [b for b in self.kf_sent if b.get("touser") == user]


@dataclass
class WeChatCustomer:
    """One WeChat user writing to a 微信客服 account; `client` posts to our app."""

    client: Any
    fake: FakeWeComKf
    signer: CallbackSigner
    user: str
    open_kfid: str = "wkSTORE0001"
    path: str = "/wecom/callback"

    async def notify(self, *, token: str | None = None, timestamp: int | None = None,
                     open_kfid: str | None = None) -> int:
        """WeCom's kf_msg_or_event callback for the account; returns the HTTP status."""
        xml = self.fake.callback_xml(open_kfid or self.open_kfid, token or self.fake.issue_sync_token())
        query, body = self.signer.post(xml, timestamp=timestamp if timestamp is not None else int(self.fake.clock()))
        resp = await self.client.post(self.path, params=query, data=body, headers={"Content-Type": "text/xml"})
        await resp.read()
        return int(resp.status)

    async def say(self, text: str, *, menu_id: str | None = None, msgid: str | None = None) -> str:
        body: dict[str, Any] = {"content": text}
        if menu_id:
            body["menu_id"] = menu_id
        msgid = self.fake.customer_message(self.open_kfid, self.user, "text", body, msgid=msgid)
        assert await self.notify() == 200
        return msgid

    async def send(self, msgtype: str, body: dict[str, Any]) -> str:
        msgid = self.fake.customer_message(self.open_kfid, self.user, msgtype, body)
        assert await self.notify() == 200
        return msgid

    async def send_image(self, data: bytes, content_type: str = "image/jpeg") -> str:
        media_id = "KFMEDIA_" + secrets.token_hex(6)
        self.fake.media[media_id] = (data, content_type)
        return await self.send("image", {"media_id": media_id})

    async def enter(self, *, scene: str = "", scene_param: str = "") -> str:
        code = self.fake.enter_session(self.open_kfid, self.user, scene=scene, scene_param=scene_param)
        assert await self.notify() == 200
        return code

    def received(self) -> list[dict[str, Any]]:
        return self.fake.sent_to(self.user)

    def texts(self) -> list[str]:
        out = []
        for body in self.received():
            if body["msgtype"] == "text":
                out.append(body["text"]["content"])
            elif body["msgtype"] == "msgmenu":
                out.append(body["msgmenu"].get("head_content", ""))
        return out

    def menus(self) -> list[dict[str, Any]]:
        return [b["msgmenu"] for b in self.received() if b["msgtype"] == "msgmenu"]
