"""WeCom (企业微信) self-built application adapter.

Public API:
- `WeComConfig` (adapters.wecom.config)
- `create_wecom_adapter(config, inbox, tokens, http_session_factory=None, clock=time.time,
  budget=None) -> WeComAdapter`; `budget` is the per-recipient message budget
  (adapters.wecom.budget: in-process by default, RedisRecipientBudget to share it)
- `WeComAdapter.add_routes(app)` registers GET/POST /wecom/callback; `.sender` is the
  ChannelSender for platform "wecom"; `start()`/`stop()` manage the HTTP session.

wechatpy is imported only inside create_wecom_adapter (through the callback module), so a
deployment without WeCom settings never pays for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from adapters.wecom.config import WeComConfig

if TYPE_CHECKING:
    from aiohttp import web

    from adapters.wecom.api import SessionFactory
    from adapters.wecom.budget import RecipientBudget
    from adapters.wecom.callback import WeComCallback
    from adapters.wecom.sender import WeComSender
    from core.ports import ChannelSender, InboxPort, TokenCache

__all__ = ["WeComAdapter", "WeComConfig", "create_wecom_adapter"]


class WeComAdapter:
    platform = "wecom"

    def __init__(self, callback: WeComCallback, sender: WeComSender) -> None:
        self.callback = callback
        self.sender: ChannelSender = sender  # the PlatformAdapter protocol's type
        self._sender = sender

    def add_routes(self, app: web.Application) -> None:
        self.callback.add_routes(app)

    async def start(self) -> None:
        """Nothing to connect: WeCom pushes callbacks over HTTP."""

    async def stop(self) -> None:
        await self._sender.close()


def create_wecom_adapter(
    config: WeComConfig,
    inbox: InboxPort,
    tokens: TokenCache,
    http_session_factory: SessionFactory | None = None,
    clock: Callable[[], float] = time.time,
    budget: RecipientBudget | None = None,
) -> WeComAdapter:
    from adapters.wecom.callback import WeComCallback
    from adapters.wecom.sender import WeComSender

    return WeComAdapter(
        WeComCallback(config, inbox, clock=clock),
        WeComSender(config, tokens, http_session_factory, clock=clock, budget=budget),
    )
