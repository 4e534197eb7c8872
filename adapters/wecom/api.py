"""WeCom server API over aiohttp, with the access token kept in the TokenCache port.

Why aiohttp and not wechatpy's WeChatClient: wechatpy uses blocking `requests` without a
timeout; running it in threads would cost a thread per in-flight call and its token
storage is per process. Here every call is non-blocking, has a timeout, and the token is
shared through the TokenCache (Redis when configured).

Errors carry WeCom's errcode: `WeComUnavailable` (transient: retry later) and
`WeComRejected` (permanent) subclass the core delivery errors, so the outbox can use them
directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from adapters.base import adapter_logger
from adapters.media import read_capped
from adapters.wecom.config import WeComConfig
from adapters.wire import JSON_HEADERS, UnsafePayload, api_session, json_body, loads_bounded
from core.errors import DeliveryRejected, DeliveryRetryLater
from core.ports import TokenCache

log = adapter_logger(__name__)

TOKEN_LIFETIME_S = 7200
TOKEN_REFRESH_MARGIN_S = 300  # refresh well before WeCom expires it
# 40001 invalid credential, 40014 invalid access_token, 42001 access_token expired.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# -1 system busy, 45009 API frequency limit, 45033 concurrency limit,
# 60020 caller IP not trusted (an admin must add it; retrying later can succeed).
TRANSIENT_ERRCODES = frozenset({-1, 45009, 45033, 60020})

RETRY_AFTER_RATE_LIMIT_S = 60.0
RETRY_AFTER_SERVER_S = 5.0
RETRY_AFTER_TOKEN_S = 30.0
RETRY_AFTER_IP_S = 300.0


class WeComUnavailable(DeliveryRetryLater):
    def __init__(self, reason: str, *, errcode: int | None = None, retry_after_s: float = RETRY_AFTER_SERVER_S) -> None:
        super().__init__(reason, retry_after_s=retry_after_s)
        self.errcode = errcode


class WeComRejected(DeliveryRejected):
    def __init__(self, reason: str, *, errcode: int | None = None) -> None:
        super().__init__(reason)
        self.errcode = errcode


SessionFactory = Callable[[], aiohttp.ClientSession]


class WeComApi:
    def __init__(self, config: WeComConfig, tokens: TokenCache, session_factory: SessionFactory | None = None) -> None:
        self._config = config
        self._tokens = tokens
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._owns_session = session_factory is None
        self._token_lock = asyncio.Lock()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._session_factory is not None:
                self._session = self._session_factory()
            else:
                self._session = api_session(self._config.http_timeout_s)
        return self._session

    # --- token -----------------------------------------------------------------------

    async def access_token(self) -> str:
        key = self._config.token_cache_key
        if token := await self._tokens.get(key):
            return token
        async with self._token_lock:  # one gettoken per process when many sends miss together
            if token := await self._tokens.get(key):
                return token
            params = {"corpid": self._config.corp_id, "corpsecret": self._config.secret}
            data = await self._request("GET", "gettoken", params=params, token_call=True)
            token = str(data.get("access_token") or "")
            if not token:
                raise WeComUnavailable("gettoken answered without a token", retry_after_s=RETRY_AFTER_TOKEN_S)
            lifetime = float(data.get("expires_in") or TOKEN_LIFETIME_S)
            await self._tokens.set(key, token, max(lifetime - TOKEN_REFRESH_MARGIN_S, 60.0))
            return token

    async def _invalidate(self, token: str) -> None:
        async with self._token_lock:
            # Another task may already have refreshed it: only drop the token we saw fail.
            if await self._tokens.get(self._config.token_cache_key) == token:
                await self._tokens.delete(self._config.token_cache_key)

    # --- calls -----------------------------------------------------------------------

    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with the access token; refreshes the token once on 40001/40014/42001."""
        for attempt in (1, 2):
            token = await self.access_token()
            try:
                return await self._request("POST", path, params={"access_token": token}, body=payload)
            except WeComRejected as exc:
                if exc.errcode in TOKEN_ERRCODES and attempt == 1:
                    log.info("wecom: access token refused (%s), refreshing", exc.errcode)
                    await self._invalidate(token)
                    continue
                if exc.errcode in TOKEN_ERRCODES:
                    raise WeComUnavailable(exc.reason, errcode=exc.errcode, retry_after_s=RETRY_AFTER_TOKEN_S) from exc
                raise
        raise AssertionError("unreachable")

    async def get_media(self, media_id: str) -> bytes:
        for attempt in (1, 2):
            token = await self.access_token()
            try:
                return await self._download(media_id, token)
            except WeComRejected as exc:
                if exc.errcode in TOKEN_ERRCODES and attempt == 1:
                    await self._invalidate(token)
                    continue
                raise
        raise AssertionError("unreachable")

    async def _download(self, media_id: str, token: str) -> bytes:
        url = self._config.api_base_url + "media/get"
        try:
            async with self._http().get(url, params={"access_token": token, "media_id": media_id}) as resp:
                _raise_for_http(resp.status, "media/get")
                body = await read_capped(resp)  # streamed: past the cap it stops reading
                # Errors come back as JSON; the media itself as its own content type.
                if resp.content_type in ("application/json", "text/plain") and body.lstrip().startswith(b"{"):
                    answer = loads_bounded(body)
                    _raise_for_errcode(answer if isinstance(answer, dict) else {}, "media/get")
                return body
        except (aiohttp.ClientError, TimeoutError, UnsafePayload) as exc:
            raise WeComUnavailable(f"media/get: {exc!r}") from exc

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str],
        body: dict[str, Any] | None = None,
        token_call: bool = False,
    ) -> dict[str, Any]:
        url = self._config.api_base_url + path
        try:
            data_kw: dict[str, Any] = {} if body is None else {"data": json_body(body), "headers": JSON_HEADERS}
            async with self._http().request(method, url, params=params, **data_kw) as resp:
                _raise_for_http(resp.status, path)
                # Not resp.json(): WeCom answers UTF-8 JSON, and aiohttp's charset lookup cost more than the parse.
                data = loads_bounded(await resp.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            retry = RETRY_AFTER_TOKEN_S if token_call else RETRY_AFTER_SERVER_S
            raise WeComUnavailable(f"{path}: {exc!r}", retry_after_s=retry) from exc
        if not isinstance(data, dict):
            raise WeComUnavailable(f"{path}: unexpected answer {data!r:.200}")
        if token_call:
            try:
                _raise_for_errcode(data, path)
            except WeComRejected as exc:
                # A gettoken failure (bad secret, IP not trusted...) must not lose the message.
                raise WeComUnavailable(exc.reason, errcode=exc.errcode, retry_after_s=RETRY_AFTER_TOKEN_S) from exc
        else:
            _raise_for_errcode(data, path)
        return data


def _raise_for_http(status: int, path: str) -> None:
    if status >= 500 or status == 429:
        raise WeComUnavailable(f"{path}: HTTP {status}")
    if status >= 400:
        raise WeComRejected(f"{path}: HTTP {status}")


def _raise_for_errcode(data: dict[str, Any], path: str) -> None:
    errcode = int(data.get("errcode") or 0)
    if errcode == 0:
        return
    reason = f"{path}: errcode {errcode} {data.get('errmsg', '')}".strip()
    if errcode == 45009:
        raise WeComUnavailable(reason, errcode=errcode, retry_after_s=RETRY_AFTER_RATE_LIMIT_S)
    if errcode == 60020:
        raise WeComUnavailable(reason, errcode=errcode, retry_after_s=RETRY_AFTER_IP_S)
    if errcode in TRANSIENT_ERRCODES:
        raise WeComUnavailable(reason, errcode=errcode)
    raise WeComRejected(reason, errcode=errcode)
