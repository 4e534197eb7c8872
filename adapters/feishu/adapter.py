"""FeishuAdapter: what the composition root wires (routes, start/stop, sender)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from adapters.base import adapter_logger
from adapters.feishu.api import FeishuApi
from adapters.feishu.config import FeishuConfig
from adapters.feishu.ratelimit import PerKeyRateLimiter
from adapters.feishu.sender import FeishuSender
from adapters.feishu.webhook import FeishuWebhook
from core.errors import DeliveryError
from core.ports import ChannelSender, InboxPort, TokenCache

if TYPE_CHECKING:
    from aiohttp import web

    from adapters.feishu.longconn import FeishuLongConnection

log = adapter_logger(__name__)

EVENTS_PATH = "/feishu/events"


class FeishuAdapter:
    platform = "feishu"

    def __init__(self, config: FeishuConfig, inbox: InboxPort, tokens: TokenCache) -> None:
        self.config = config
        self.inbox = inbox
        self.api = FeishuApi(config, tokens)
        self.sender: ChannelSender = FeishuSender(self.api, PerKeyRateLimiter(limit=max(1, int(config.per_target_qps))))
        self.bot_open_id = config.bot_open_id
        self.webhook = FeishuWebhook(config, inbox, bot_open_id=lambda: self.bot_open_id)
        self._long_connection: FeishuLongConnection | None = None
        self._bot_info_task: asyncio.Task[None] | None = None

    def add_routes(self, app: web.Application) -> None:
        # Card callbacks are configured to the same URL as events.
        app.router.add_post(EVENTS_PATH, self.webhook.handle)

    async def start(self) -> None:
        if not self.bot_open_id:  # in the background: an unreachable Feishu must not delay start-up
            self._bot_info_task = asyncio.create_task(self.learn_bot_open_id())
        if self.config.long_connection:
            from adapters.feishu.longconn import FeishuLongConnection  # imports lark_oapi in its thread

            self._long_connection = FeishuLongConnection(self.config, self.inbox, lambda: self.bot_open_id)
            await self._long_connection.start()

    async def stop(self) -> None:
        if self._bot_info_task is not None:
            self._bot_info_task.cancel()
        if self._long_connection is not None:
            await self._long_connection.stop()
        await self.api.close()

    async def learn_bot_open_id(self) -> None:
        """The bot's own open_id tells "@bot" from other mentions in group messages."""
        try:
            data = await self.api.call("GET", "/bot/v3/info")
        except DeliveryError as exc:
            log.warning("无法获取飞书机器人信息（群聊中任何 @ 都视为 @机器人）：%r", exc.reason)
            return
        self.bot_open_id = str((data.get("bot") or {}).get("open_id") or "")
