"""A fake WeCom server API on 127.0.0.1 plus builders for callbacks exactly as WeCom sends them.

The API half answers gettoken, message/send, message/update_template_card and media/get
with WeCom's JSON shapes and errcodes and records every request. Switches make it fail
the ways the real one does: gettoken errors, 45009 rate limit, HTTP 500, expired tokens.

The callback half encrypts with wechatpy's own `WeChatCrypto.encrypt_message`, then
re-wraps the result the way WeCom POSTs it: signature, timestamp and nonce in the query
string, `<xml><ToUserName/><AgentID/><Encrypt/></xml>` as the body.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import xmltodict
from aiohttp import web

from tests.fakes.huge_body import HugeBody

# The official sample from WeCom's "加解密方案说明".
SAMPLE_TOKEN = "QDG6eK"
SAMPLE_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
SAMPLE_CORP_ID = "wx5823bf96d3bd56c7"
SAMPLE_VERIFY_QUERY = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
}
SAMPLE_VERIFY_ANSWER = "1616140317555161061"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: dict[str, Any] | None


@dataclass
class FakeWeCom:
    corp_id: str = "ww-test-corp"
    secret: str = "test-secret"
    agent_id: int = 1000002
    users: set[str] = field(default_factory=lambda: {"zhangsan", "lisi", "wangwu"})
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    huge_media: dict[str, HugeBody] = field(default_factory=dict)  # served streamed, far past any cap

    # --- switches ---
    gettoken_errcode: int = 0  # e.g. 40013 invalid corpid, 60020 IP not trusted
    rate_limit_next: int = 0  # the next N API calls (not gettoken) answer 45009
    http_500_next: int = 0  # the next N API calls answer HTTP 500
    expire_tokens_next: bool = False  # the next API call finds its token expired (42001)
    refuse_text_containing: str | None = None  # such text messages are refused for good (errcode 40008)
    # Like WeCom: a member receives at most this many messages a minute from the app; the rest
    # are answered "ok" and silently dropped (recorded in `dropped`). None: no limit.
    per_user_per_minute: int | None = 30
    clock: Any = time.time  # for the per-user window; tests may share the app's clock

    # --- what happened ---
    requests: list[RecordedRequest] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)  # message/send bodies answered ok
    dropped: list[dict[str, Any]] = field(default_factory=list)  # answered ok, never shown (over the limit)
    _received_at: dict[str, list[float]] = field(default_factory=dict)
    applied_updates: list[dict[str, Any]] = field(default_factory=list)  # update_template_card answered ok
    gettoken_calls: int = 0
    tokens: set[str] = field(default_factory=set)
    response_codes: dict[str, bool] = field(default_factory=dict)  # code -> used
    task_ids: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None
    _msgid: itertools.count = field(default_factory=lambda: itertools.count(1))
    base_url: str = ""
    # More routes on the same app (tests/fakes/directory.py: the address book), added at start().
    extra_routes: list[Any] = field(default_factory=list)

    # --- lifecycle ---

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        app.router.add_post("/cgi-bin/message/send", self._send)
        app.router.add_post("/cgi-bin/message/update_template_card", self._update)
        app.router.add_get("/cgi-bin/media/get", self._media)
        for add_routes in self.extra_routes:
            add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/cgi-bin/"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- views of the record ---

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [r.json or {} for r in self.requests if r.path.endswith("message/send")]

    @property
    def updates(self) -> list[dict[str, Any]]:
        return [r.json or {} for r in self.requests if r.path.endswith("update_template_card")]

    def issue_response_code(self) -> str:
        """A code as a template_card_event callback would carry it."""
        code = "rc-" + secrets.token_hex(8)
        self.response_codes[code] = False
        return code

    def expire_all_tokens(self) -> None:
        self.tokens.clear()

    # --- handlers ---

    async def _gettoken(self, request: web.Request) -> web.Response:
        self._record(request, None)
        self.gettoken_calls += 1
        if self.gettoken_errcode:
            return _err(self.gettoken_errcode, "gettoken refused")
        if request.query.get("corpid") != self.corp_id or request.query.get("corpsecret") != self.secret:
            return _err(40001, "invalid credential")
        token = "tok-" + secrets.token_hex(8)
        self.tokens.add(token)
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

    def _gate(self, request: web.Request) -> web.Response | None:
        """Token, rate-limit and 5xx checks every API call goes through."""
        if self.http_500_next:
            self.http_500_next -= 1
            return web.Response(status=500, text="internal error")
        if self.expire_tokens_next:
            self.expire_tokens_next = False
            self.tokens.clear()
        token = request.query.get("access_token", "")
        if not token:
            return _err(41001, "access_token missing")
        if token not in self.tokens:
            return _err(42001, "access_token expired")
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            return _err(45009, "reach max api daily quota limit")
        return None

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        if (denied := self._gate(request)) is not None:
            return denied
        if body.get("agentid") != self.agent_id:
            return _err(40056, "invalid agentid")
        msgtype = body.get("msgtype")
        if msgtype not in {"text", "markdown", "template_card"} or msgtype not in body:
            return _err(40008, "invalid message type")
        if msgtype == "markdown" and len(body["markdown"].get("content", "").encode()) > 2048:
            return _err(40058, "markdown content exceed max length")
        if msgtype == "text" and self.refuse_text_containing and self.refuse_text_containing in body["text"].get(
            "content", ""
        ):
            return _err(40008, "invalid message content")
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        invalid = [u for u in users if u not in self.users]
        if users and len(invalid) == len(users):
            return _err(81013, "user & party & tag all invalid")
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid)}
        answer["msgid"] = f"msg{next(self._msgid)}"
        if msgtype == "template_card":
            card = body["template_card"]
            task_id = card.get("task_id")
            if task_id:
                if task_id in self.task_ids:
                    return _err(42014, "taskid has existed")
                self.task_ids.add(task_id)
            if card.get("card_type") in {"button_interaction", "vote_interaction", "multiple_interaction"}:
                answer["response_code"] = self.issue_response_code()
        if self._over_limit(users):
            self.dropped.append(body)
        else:
            self.delivered.append(body)
        return web.json_response(answer)

    def _over_limit(self, users: list[str]) -> bool:
        if self.per_user_per_minute is None:
            return False
        now = float(self.clock())
        over = False
        for user in users:
            times = [t for t in self._received_at.get(user, []) if t > now - 60]
            if len(times) >= self.per_user_per_minute:
                over = True
            else:
                times.append(now)
            self._received_at[user] = times
        return over

    async def _update(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        if (denied := self._gate(request)) is not None:
            return denied
        code = body.get("response_code")
        # The real errcode for a spent/unknown code is undocumented (UNVERIFIED); any non-transient one will do.
        if code not in self.response_codes or self.response_codes[code]:
            return _err(40098, "invalid response_code")
        self.response_codes[code] = True
        self.applied_updates.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": []})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None)
        if (denied := self._gate(request)) is not None:
            return denied
        if (huge := self.huge_media.get(request.query.get("media_id", ""))) is not None:
            return await huge.serve(request)
        item = self.media.get(request.query.get("media_id", ""))
        if item is None:
            return _err(40007, "invalid media_id")
        data, content_type = item
        return web.Response(
            body=data,
            content_type=content_type,
            headers={"Content-Disposition": 'attachment; filename="photo.jpg"'},
        )

    def _record(self, request: web.Request, body: dict[str, Any] | None) -> None:
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query), body))


def _err(errcode: int, errmsg: str) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg})


# --- callbacks as WeCom sends them -----------------------------------------------------


@dataclass(frozen=True)
class CallbackSigner:
    token: str
    encoding_aes_key: str
    corp_id: str
    agent_id: int = 1000002

    def _crypto(self) -> Any:
        from wechatpy.enterprise.crypto import WeChatCrypto

        return WeChatCrypto(self.token, self.encoding_aes_key, self.corp_id)

    def _seal(self, plain: str, timestamp: int | None, nonce: str | None) -> tuple[str, str, str, str]:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**9))
        envelope = xmltodict.parse(self._crypto().encrypt_message(plain, nonce, ts))["xml"]
        return envelope["Encrypt"], envelope["MsgSignature"], ts, nonce

    def post(
        self, inner_xml: str, *, timestamp: int | None = None, nonce: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """(query, body) of an encrypted callback POST."""
        encrypted, signature, ts, nonce = self._seal(inner_xml, timestamp, nonce)
        body = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<AgentID><![CDATA[{self.agent_id}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        )
        return {"msg_signature": signature, "timestamp": ts, "nonce": nonce}, body.encode()

    def verify(self, echo: str, *, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
        """Query of a signed URL-verification GET whose echostr decrypts to `echo`."""
        encrypted, signature, ts, nonce = self._seal(echo, timestamp, nonce)
        return {"msg_signature": signature, "timestamp": ts, "nonce": nonce, "echostr": encrypted}

    @staticmethod
    def url(path: str, query: dict[str, str]) -> str:
        return f"{path}?{urlencode(query)}"


# --- inner message XML -------------------------------------------------------------------


def _xml(fields: dict[str, Any]) -> str:
    parts = []
    for name, value in fields.items():
        # Numbers and pre-built nested XML go in bare; text in CDATA, as WeCom writes it.
        if isinstance(value, int | float) or (isinstance(value, str) and value.startswith("<")):
            parts.append(f"<{name}>{value}</{name}>")
        else:
            parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


def _head(to: str, sender: str, created: int, msg_type: str) -> dict[str, Any]:
    return {"ToUserName": to, "FromUserName": sender, "CreateTime": created, "MsgType": msg_type}


def text_xml(sender: str, content: str, *, msg_id: int, created: int, to: str = "corp", agent_id: int = 1000002) -> str:
    return _xml({**_head(to, sender, created, "text"), "Content": content, "MsgId": msg_id, "AgentID": agent_id})


def image_xml(sender: str, media_id: str, *, msg_id: int, created: int, agent_id: int = 1000002) -> str:
    fields = {"PicUrl": "https://wework.qpic.cn/fake.jpg", "MediaId": media_id, "MsgId": msg_id, "AgentID": agent_id}
    return _xml({**_head("corp", sender, created, "image"), **fields})


def location_xml(sender: str, lat: float, lng: float, *, msg_id: int, created: int, label: str = "") -> str:
    fields = {"Location_X": lat, "Location_Y": lng, "Scale": 15, "Label": label, "MsgId": msg_id, "AgentID": 1000002}
    return _xml({**_head("corp", sender, created, "location"), **fields})


def event_xml(sender: str, event: str, *, created: int, agent_id: int = 1000002, **extra: Any) -> str:
    return _xml(
        {**_head("corp", sender, created, "event"), "Event": event, "EventKey": "", "AgentID": agent_id, **extra}
    )


def template_card_event_xml(
    sender: str,
    *,
    task_id: str,
    event_key: str,
    created: int,
    response_code: str,
    card_type: str = "button_interaction",
    selected: list[tuple[str, list[str]]] | None = None,
) -> str:
    """`selected` = [(question_key, [option ids])]; one item gives one <SelectedItem>, as WeCom does."""
    fields: dict[str, Any] = {
        **_head("corp", sender, created, "event"),
        "Event": "template_card_event",
        "EventKey": event_key,
        "TaskId": task_id,
        "CardType": card_type,
        "ResponseCode": response_code,
        "AgentID": 1000002,
    }
    if selected is not None:
        items = "".join(
            f"<SelectedItem><QuestionKey><![CDATA[{key}]]></QuestionKey><OptionIds>"
            + "".join(f"<OptionId><![CDATA[{i}]]></OptionId>" for i in ids)
            + "</OptionIds></SelectedItem>"
            for key, ids in selected
        )
        fields["SelectedItems"] = items
    return _xml(fields)


# --- a WeCom member, as our service sees them -------------------------------------------


@dataclass
class CallbackAnswer:
    status: int
    body: str
    elapsed_s: float  # request sent -> whole answer read


_msg_ids = itertools.count(int(time.time()) * 1000)


@dataclass
class WeComMember:
    """One member of the corp: what they do reaches our /wecom/callback exactly as WeCom would
    deliver it (sealed, signed, fresh timestamp); what our app sent them is read from the fake
    API's record. `client` is anything with aiohttp's `post(path, params=, data=)`."""

    client: Any
    fake: FakeWeCom
    signer: CallbackSigner
    user_id: str
    path: str = "/wecom/callback"
    clock: Any = time.time  # WeCom's clock: CreateTime and the signed timestamp

    def _now(self) -> int:
        return int(self.clock())

    async def post(self, inner_xml: str, *, timestamp: int | None = None) -> CallbackAnswer:
        query, body = self.signer.post(inner_xml, timestamp=timestamp if timestamp is not None else self._now())
        start = time.perf_counter()
        resp = await self.client.post(self.path, params=query, data=body, headers={"Content-Type": "text/xml"})
        text = await resp.text()
        return CallbackAnswer(resp.status, text, time.perf_counter() - start)

    async def say(self, content: str, *, msg_id: int | None = None) -> CallbackAnswer:
        msg_id = msg_id if msg_id is not None else next(_msg_ids)
        return await self.post(text_xml(self.user_id, content, msg_id=msg_id, created=self._now()))

    async def send_image(self, data: bytes, *, content_type: str = "image/jpeg") -> str:
        media_id = "MEDIA_" + secrets.token_hex(6)
        self.fake.media[media_id] = (data, content_type)
        answer = await self.post(image_xml(self.user_id, media_id, msg_id=next(_msg_ids), created=self._now()))
        assert answer.status == 200, answer
        return media_id

    async def send_location(self, lat: float, lng: float, label: str = "") -> CallbackAnswer:
        xml = location_xml(self.user_id, lat, lng, msg_id=next(_msg_ids), created=self._now(), label=label)
        return await self.post(xml)

    async def enter(self) -> CallbackAnswer:
        return await self.post(event_xml(self.user_id, "enter_agent", created=self._now()))

    async def press(
        self, card: dict[str, Any], key: str, *, selected: list[tuple[str, list[str]]] | None = None
    ) -> tuple[CallbackAnswer, str]:
        """Press a button (or submit the form) of a template_card we received; returns the answer
        and the ResponseCode WeCom put in the callback."""
        code = self.fake.issue_response_code()
        xml = template_card_event_xml(
            self.user_id,
            task_id=card["task_id"],
            event_key=key,
            created=self._now(),
            response_code=code,
            card_type=card["card_type"],
            selected=selected,
        )
        return await self.post(xml), code

    # --- what reached this member ---

    def received(self) -> list[dict[str, Any]]:
        return [b for b in self.fake.delivered if self.user_id in str(b.get("touser", "")).split("|")]

    def texts(self) -> list[str]:
        return [b["text"]["content"] for b in self.received() if b.get("msgtype") == "text"]

    def cards(self) -> list[dict[str, Any]]:
        return [b["template_card"] for b in self.received() if b.get("msgtype") == "template_card"]

    def updates(self) -> list[dict[str, Any]]:
        return [b for b in self.fake.applied_updates if self.user_id in (b.get("userids") or [])]
