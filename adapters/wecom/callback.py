"""`GET/POST /wecom/callback`: verify, decrypt, store in the inbox, answer at once.

Order of checks on POST, cheapest first: size cap (413), query + timestamp window (400/403;
the timestamp is read as an integer of ASCII digits only),
XML safety (400), signature compared in constant time (403), decrypt + corp id (403),
parse. Nothing reaches the inbox before all of them passed. The answer is an empty 200
(no passive reply): replies go out through the outbox, never inside WeCom's 5 s budget.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import struct
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from adapters.base import adapter_logger
from adapters.wecom.config import WeComConfig
from adapters.wecom.inbound import parse_xml, to_inbound
from adapters.wire import unix_seconds
from core.ports import InboxPort

log = adapter_logger(__name__)

CALLBACK_PATH = "/wecom/callback"
# 微信客服's kf_msg_or_event arrives on the same URL (same Token and AES key): one route per app,
# answered by whichever WeComCallback is stored here (the app's when it is configured).
KfListener = Callable[[dict[str, Any]], None]


class CallbackRejected(Exception):
    """A callback request we refuse; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """WeCom msg_signature: sha1 over the sorted concatenation (same as wechatpy's WeChatSigner)."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


class WeComCallback:
    def __init__(self, config: WeComConfig, inbox: InboxPort, clock: Callable[[], float] = time.time) -> None:
        # Lazy: wechatpy.enterprise imports its requests-based client (~0.2 s); only when WeCom is on.
        from wechatpy.enterprise.crypto import WeChatCrypto
        from wechatpy.enterprise.exceptions import InvalidCorpIdException
        from wechatpy.exceptions import InvalidSignatureException

        self._config = config
        self._inbox = inbox
        self._clock = clock
        self._crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.corp_id)
        self._bad_signature: type[Exception] = InvalidSignatureException
        self._bad_corp: type[Exception] = InvalidCorpIdException
        # Set by the 微信客服 adapter: gets each verified kf_msg_or_event (must not block).
        self.kf_listener: KfListener | None = None

    def add_routes(self, app: web.Application) -> None:
        existing = app.get(CALLBACK_APP_KEY)
        if existing is not None:
            # Another adapter registered the route first: this callback answers it from now on.
            self.kf_listener = self.kf_listener or existing.kf_listener
            app[CALLBACK_APP_KEY] = self
            return
        app[CALLBACK_APP_KEY] = self

        async def verify(request: web.Request) -> web.Response:
            return await request.app[CALLBACK_APP_KEY].handle_verify(request)

        async def event(request: web.Request) -> web.Response:
            return await request.app[CALLBACK_APP_KEY].handle_event(request)

        app.router.add_get(CALLBACK_PATH, verify)
        app.router.add_post(CALLBACK_PATH, event)

    async def handle_verify(self, request: web.Request) -> web.Response:
        try:
            plain = self.verify_url(dict(request.query))
        except CallbackRejected as exc:
            log.warning("wecom: URL verification refused (%s): %r", exc.status, exc.reason)
            return web.Response(status=exc.status)
        # The raw echostr: no quotes, no newline, no JSON.
        return web.Response(text=plain, content_type="text/plain")

    async def handle_event(self, request: web.Request) -> web.Response:
        try:
            body = await _read_capped(request, self._config.max_body_bytes)
            message = self.decode(dict(request.query), body)
        except CallbackRejected as exc:
            log.warning("wecom: callback refused (%s): %r", exc.status, exc.reason)
            return web.Response(status=exc.status)
        if str(message.get("Event") or "").strip() == "kf_msg_or_event":
            if self.kf_listener is None:
                log.warning("wecom: kf_msg_or_event received but 微信客服 is not configured")
            else:
                self.kf_listener(message)  # schedules a kf/sync_msg: the answer does not wait for it
            return web.Response(status=200)
        inbound = to_inbound(message)
        if inbound is None:
            return web.Response(status=200)
        # If the inbox fails we answer 500 and WeCom retries (3 tries): nothing is lost silently.
        await self._inbox.accept(inbound)
        return web.Response(status=200)

    def verify_url(self, query: dict[str, str]) -> str:
        signature_, timestamp, nonce, echostr = _require(query, "msg_signature", "timestamp", "nonce", "echostr")
        self._check_fresh(timestamp)
        if not self._signature_ok(signature_, timestamp, nonce, echostr) and " " in echostr:
            # An unencoded '+' in the query string arrives as a space.
            echostr = echostr.replace(" ", "+")
        self._check_signature(signature_, timestamp, nonce, echostr)
        return self._decrypt(lambda: self._crypto.check_signature(signature_, timestamp, nonce, echostr))

    def decode(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        """Verify and decrypt one POST; returns the inner message dict."""
        signature_, timestamp, nonce = _require(query, "msg_signature", "timestamp", "nonce")
        self._check_fresh(timestamp)
        try:
            envelope = parse_xml(body)
        except ValueError as exc:
            raise CallbackRejected(400, f"envelope: {exc}") from exc
        encrypted = envelope.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise CallbackRejected(400, "no Encrypt element")
        self._check_signature(signature_, timestamp, nonce, encrypted)
        # Signature already checked; decrypt_message checks it again (with !=) and the corp id.
        envelope_dict = {"Encrypt": encrypted}
        inner = self._decrypt(lambda: self._crypto.decrypt_message(envelope_dict, signature_, timestamp, nonce))
        try:
            message = parse_xml(inner)
        except ValueError as exc:
            raise CallbackRejected(400, f"message: {exc}") from exc
        agent = str(message.get("AgentID") or "").strip()
        if agent and agent != self._config.agent_id:
            raise CallbackRejected(403, f"AgentID {agent} is not ours")
        return message

    def _check_fresh(self, timestamp: str) -> None:
        try:
            # ASCII digits only, bounded: int() would take " 1", "+1", "1_0", other scripts'
            # digits, and 4,000 nines that overflow when compared with the float clock.
            sent_at = unix_seconds(timestamp)
        except ValueError as exc:
            raise CallbackRejected(400, "timestamp is not an integer") from exc
        if abs(self._clock() - sent_at) > self._config.timestamp_window_s:
            raise CallbackRejected(403, f"timestamp {sent_at} outside the freshness window")

    def _signature_ok(self, given: str, timestamp: str, nonce: str, encrypted: str) -> bool:
        expected = signature(self._config.token, timestamp, nonce, encrypted)
        return hmac.compare_digest(expected.encode(), given.lower().encode())

    def _check_signature(self, given: str, timestamp: str, nonce: str, encrypted: str) -> None:
        if not self._signature_ok(given, timestamp, nonce, encrypted):
            raise CallbackRejected(403, "bad msg_signature")

    def _decrypt(self, call: Callable[[], str]) -> str:
        try:
            return call()
        except self._bad_signature as exc:
            raise CallbackRejected(403, "bad msg_signature") from exc
        except self._bad_corp as exc:
            raise CallbackRejected(403, "payload encrypted for another corp id") from exc
        except (ValueError, TypeError, IndexError, struct.error, binascii.Error, UnicodeDecodeError) as exc:
            raise CallbackRejected(400, f"undecryptable payload: {exc!r}") from exc


CALLBACK_APP_KEY = web.AppKey("wecom_callback", WeComCallback)


def _require(query: dict[str, str], *names: str) -> list[str]:
    values = [query.get(name, "") for name in names]
    if not all(values):
        missing = [name for name, value in zip(names, values, strict=True) if not value]
        raise CallbackRejected(400, f"missing query parameters: {missing}")
    return values


async def _read_capped(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise CallbackRejected(413, f"body of {request.content_length} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise CallbackRejected(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
