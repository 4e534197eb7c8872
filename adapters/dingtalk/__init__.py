"""DingTalk (钉钉) adapter: Stream mode inbound, robot/card OpenAPI outbound.

Importing this package does not import the dingtalk_stream SDK; the stream thread does, on start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.dingtalk.config import DingTalkConfig
from adapters.dingtalk.sender import DingTalkSender
from adapters.dingtalk.stream import DingTalkStream
from core.ports import ChannelSender, InboxPort, TokenCache

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["DingTalkAdapter", "DingTalkConfig", "DingTalkSender", "create_dingtalk_adapter"]


class DingTalkAdapter:
    platform = "dingtalk"

    def __init__(self, config: DingTalkConfig, inbox: InboxPort, tokens: TokenCache) -> None:
        self.config = config
        self._sender = DingTalkSender(config, tokens)
        self.sender: ChannelSender = self._sender  # what PlatformAdapter promises
        self.stream = DingTalkStream(config, inbox)

    def add_routes(self, app: web.Application) -> None:
        """Stream mode needs no public HTTP endpoint."""
        return None

    async def start(self) -> None:
        await self.stream.start()

    async def stop(self) -> None:
        await self.stream.stop()
        await self._sender.close()


def create_dingtalk_adapter(config: DingTalkConfig, inbox: InboxPort, tokens: TokenCache) -> DingTalkAdapter:
    return DingTalkAdapter(config, inbox, tokens)
