"""POST /feishu/events: verify, decrypt, translate, store in the inbox, answer at once.

Status codes: 413 oversized body; 400 bad JSON / undecryptable / malformed event
(nothing stored); 401 bad signature, stale timestamp or wrong verification token;
200 for everything accepted, duplicated or deliberately ignored (unknown types are
logged, not retried by Feishu). An inbox failure is a 500 so Feishu pushes again.

Order: the signature is checked on the raw bytes before anything is parsed; with an encrypt
key set, an unsigned body (only url_verification may be one) is parsed only when it is small.
Every parse is bounded (adapters/wire.py: depth, numbers), and the timestamp is an integer.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from adapters.base import adapter_logger
from adapters.feishu import crypto
from adapters.feishu.config import FeishuConfig
from adapters.feishu.errors import EventRejected, FeishuError, MalformedEvent
from adapters.feishu.events import CARD_ACTION, URL_VERIFICATION, Ignored, event_token, event_type, translate
from adapters.wire import UnsafePayload, loads_bounded, unix_seconds
from core.ports import InboxPort

log = adapter_logger(__name__)

CARD_TOAST = {"toast": {"type": "info", "content": "已收到，处理中"}}
_SUCCESS = {"msg": "success"}
# A url_verification (the one event Feishu may send unsigned when an encrypt key is set) is a
# few hundred bytes; an unsigned body larger than this is refused without being parsed.
UNSIGNED_MAX_BYTES = 4096


class BodyTooLarge(FeishuError):
    pass


class FeishuWebhook:
    def __init__(
        self,
        config: FeishuConfig,
        inbox: InboxPort,
        bot_open_id: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._inbox = inbox
        self._bot_open_id = bot_open_id or (lambda: config.bot_open_id)
        self._clock = clock
        if not (config.encrypt_key or config.verification_token):
            log.warning("飞书事件未配置 encrypt key 或 verification token：/feishu/events 将拒绝所有请求")

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await _read_capped(request, self._config.max_body_bytes)
            payload = self.open(body, request.headers)
        except BodyTooLarge as exc:
            return _refuse(413, exc)
        except MalformedEvent as exc:
            return _refuse(400, exc)
        except EventRejected as exc:
            return _refuse(401, exc)

        kind = event_type(payload)
        if kind == URL_VERIFICATION:
            return web.json_response({"challenge": payload.get("challenge", "")})
        try:
            result = translate(payload, self._bot_open_id())
        except MalformedEvent as exc:
            return _refuse(400, exc)
        if isinstance(result, Ignored):
            log.info("飞书事件已确认但忽略：%r (event_type=%r)", result.reason, kind)
            return web.json_response({} if kind == CARD_ACTION else _SUCCESS)
        # Stored (and committed) before we answer; a redelivery returns False and changes nothing.
        await self._inbox.accept(result)
        return web.json_response(CARD_TOAST if kind == CARD_ACTION else _SUCCESS)

    def open(self, body: bytes, headers: Any) -> dict[str, Any]:
        """Authenticate and decode one request body. `headers` is case-insensitive (aiohttp's
        CIMultiDict), which is the canonicalisation lark's own dispatcher lacks."""
        key = self._config.encrypt_key
        signature = headers.get("X-Lark-Signature")
        signed = False
        if key and signature:
            timestamp = headers.get("X-Lark-Request-Timestamp", "")
            nonce = headers.get("X-Lark-Request-Nonce", "")
            self._check_fresh(timestamp)
            if not crypto.signature_ok(timestamp, nonce, key, body, signature):
                raise EventRejected("签名不正确")
            signed = True
        elif key and len(body) > UNSIGNED_MAX_BYTES:
            raise EventRejected("缺少签名")
        payload = _decode(body, key)
        kind = event_type(payload)
        # Feishu signs every event when an encrypt key is set; url_verification may come
        # unsigned (lark-oapi exempts it too) but must still carry the right token.
        if key and not signed and kind != URL_VERIFICATION:
            raise EventRejected("缺少签名")
        self._check_token(payload, signed)
        return payload

    def _check_fresh(self, timestamp: str) -> None:
        try:
            # Integers only: float("nan") would make every age comparison false, i.e. "fresh".
            age = abs(self._clock() - unix_seconds(timestamp))
        except ValueError as exc:
            raise EventRejected("时间戳无效") from exc
        if age > self._config.freshness_window_s:
            raise EventRejected("请求已过期", age_s=age)

    def _check_token(self, payload: dict[str, Any], signed: bool) -> None:
        expected = self._config.verification_token
        if not expected:
            if not signed and event_type(payload) != URL_VERIFICATION:
                raise EventRejected("未配置 encrypt key 或 verification token")
            return
        received = event_token(payload) or ""
        if not hmac.compare_digest(expected.encode("utf-8"), received.encode("utf-8")):
            raise EventRejected("verification token 不正确")


def _decode(body: bytes, key: str) -> dict[str, Any]:
    try:
        outer = loads_bounded(body)
    except UnsafePayload as exc:
        raise MalformedEvent("请求体不是 JSON", detail=str(exc)[:200]) from exc
    if not isinstance(outer, dict):
        raise MalformedEvent("请求体不是 JSON 对象")
    if "encrypt" not in outer:
        return outer
    if not key:
        raise MalformedEvent("收到加密事件，但未配置 encrypt key")
    try:
        payload = loads_bounded(crypto.decrypt(str(outer["encrypt"]), key))
    except crypto.DecryptError as exc:
        raise MalformedEvent("无法解密") from exc
    except UnsafePayload as exc:
        raise MalformedEvent("解密后不是 JSON", detail=str(exc)[:200]) from exc
    if not isinstance(payload, dict):
        raise MalformedEvent("解密后不是 JSON 对象")
    return payload


async def _read_capped(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge("请求体过大", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:  # chunked uploads have no Content-Length: count as we go
            raise BodyTooLarge("请求体过大", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse(status: int, exc: FeishuError) -> web.Response:
    # %r: reasons and data may carry what the sender wrote (field names, event types).
    log.warning("拒绝飞书事件 (%s)：%r %r", status, exc.reason, exc.data or {})
    return web.json_response({"msg": exc.reason}, status=status)
