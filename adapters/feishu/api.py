"""Thin async client for the few Feishu Open API calls we make (aiohttp, not lark-oapi).

Why not lark-oapi's client here: its tenant token lives in a per-process cache and a
cache miss fetches the token synchronously (blocking the loop), while we keep it in the
shared TokenCache port (Redis across processes); we need the raw 429 `x-ogw-ratelimit-reset`
header; and web/worker processes skip the ~2.5 s / 160 MB import.

Errors map onto the outbox contract: 429, 5xx, network errors, token failures and
rate-limit codes → DeliveryRetryLater; anything else Feishu refuses → DeliveryRejected.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from adapters.base import adapter_logger
from adapters.feishu.config import FeishuConfig
from adapters.media import read_capped
from adapters.wire import JSON_HEADERS, api_session, json_body, loads_bounded
from core.errors import DeliveryRejected, DeliveryRetryLater
from core.ports import TokenCache

log = adapter_logger(__name__)

TOKEN_REFRESH_MARGIN_S = 300  # refresh 5 min before Feishu's expiry (tokens live 2 h)
_TOKEN_INVALID_CODES = {99991661, 99991663, 99991668}
_RATE_LIMIT_CODES = {99991400, 230020}  # "request trigger frequency limit", per-chat send limit
_DEFAULT_RETRY_AFTER_S = 1.0


class FeishuApi:
    def __init__(self, config: FeishuConfig, tokens: TokenCache, session: aiohttp.ClientSession | None = None) -> None:
        self._config = config
        self._tokens = tokens
        self._session = session
        self._own_session = session is None
        self._token_lock = asyncio.Lock()
        self.token_key = f"feishu:tenant_access_token:{config.app_id}"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = api_session(self._config.http_timeout_s)
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    async def tenant_token(self) -> str:
        cached = await self._tokens.get(self.token_key)
        if cached:
            return cached
        async with self._token_lock:  # one fetch per process when many sends miss at once
            cached = await self._tokens.get(self.token_key)
            if cached:
                return cached
            body = {"app_id": self._config.app_id, "app_secret": self._config.app_secret}
            try:
                data = await self._call("POST", "/auth/v3/tenant_access_token/internal", json=body, auth=False)
            except DeliveryRejected as exc:  # wrong secret, app disabled: retried, and visible in logs
                raise DeliveryRetryLater(f"获取 tenant_access_token 失败：{exc.reason}") from exc
            token = data.get("tenant_access_token")
            if not token:
                raise DeliveryRetryLater("获取 tenant_access_token 失败：响应中没有 token")
            ttl = max(60.0, float(data.get("expire", 7200)) - TOKEN_REFRESH_MARGIN_S)
            await self._tokens.set(self.token_key, token, ttl)
            return str(token)

    async def call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> dict[str, Any]:
        """An authenticated JSON call; a token Feishu calls invalid is dropped and fetched once more."""
        try:
            return await self._call(method, path, params=params, json=json)
        except _TokenInvalid:
            await self._tokens.delete(self.token_key)
            try:
                return await self._call(method, path, params=params, json=json)
            except _TokenInvalid as exc:
                raise DeliveryRetryLater("tenant_access_token 无效") from exc

    async def download(self, path: str, params: dict[str, str]) -> bytes:
        token = await self.tenant_token()
        try:
            async with self._http().get(self._url(path), params=params, headers=_bearer(token)) as resp:
                if resp.status == 200 and not resp.content_type.startswith("application/json"):
                    return await read_capped(resp)  # streamed: past the cap it stops reading
                await _raise_for(resp, await _json_or_empty(resp))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryRetryLater(f"下载飞书资源失败：{exc!r}") from exc
        raise DeliveryRejected("飞书没有返回文件内容")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        auth: bool = True,
    ) -> dict[str, Any]:
        headers = _bearer(await self.tenant_token()) if auth else {}
        body = None
        if json is not None:
            body = json_body(json)
            headers = {**headers, **JSON_HEADERS}
        try:
            async with self._http().request(method, self._url(path), params=params, data=body, headers=headers) as resp:
                data = await _json_or_empty(resp)
                await _raise_for(resp, data)
                return data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryRetryLater(f"飞书接口网络错误：{exc!r}") from exc

    def _url(self, path: str) -> str:
        return self._config.api_base + path


class _TokenInvalid(DeliveryRetryLater):
    pass


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _json_or_empty(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        # Not resp.json(): Feishu answers UTF-8 JSON, and aiohttp's charset lookup cost more than the parse.
        data = loads_bounded(await resp.read())
    except ValueError:  # UnsafePayload included
        return {}
    return data if isinstance(data, dict) else {}


async def _raise_for(resp: aiohttp.ClientResponse, data: dict[str, Any]) -> None:
    code = data.get("code")
    msg = str(data.get("msg", ""))
    if resp.status == 429 or code in _RATE_LIMIT_CODES:
        raise DeliveryRetryLater(f"飞书限流 ({code})", retry_after_s=_reset_after(resp))
    if code in _TOKEN_INVALID_CODES:
        raise _TokenInvalid(f"tenant_access_token 无效 ({code})")
    if resp.status >= 500:
        raise DeliveryRetryLater(f"飞书服务端错误 HTTP {resp.status} ({code} {msg})")
    if resp.status >= 400 or code not in (0, None):
        raise DeliveryRejected(f"飞书拒绝请求 HTTP {resp.status} ({code} {msg})")
    if code is None:
        raise DeliveryRetryLater(f"飞书返回无法识别的响应 HTTP {resp.status}")


def _reset_after(resp: aiohttp.ClientResponse) -> float:
    raw = resp.headers.get("x-ogw-ratelimit-reset")
    try:
        return max(0.0, float(raw)) if raw is not None else _DEFAULT_RETRY_AFTER_S
    except ValueError:
        return _DEFAULT_RETRY_AFTER_S
