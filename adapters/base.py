"""What every platform adapter offers the composition root (bot/)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from core.ports import ChannelSender

if TYPE_CHECKING:
    from aiohttp import web


class PlatformAdapter(Protocol):
    platform: str  # "wecom", "feishu", "dingtalk", "local"
    sender: ChannelSender

    def add_routes(self, app: web.Application) -> None:
        """Register HTTP endpoints (callbacks); may do nothing (DingTalk Stream mode)."""
        ...

    async def start(self) -> None:
        """Start background connections (stream/long connection). Called once at app start."""
        ...

    async def stop(self) -> None: ...
