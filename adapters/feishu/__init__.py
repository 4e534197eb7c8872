"""Feishu (飞书) adapter: events (HTTP or long connection), JSON 2.0 cards, outbound messages.

Importing this package never imports lark_oapi (~2.5 s, ~160 MB): only long-connection
mode does, inside its own thread.
"""

from __future__ import annotations

from adapters.feishu.adapter import EVENTS_PATH, FeishuAdapter
from adapters.feishu.config import FeishuConfig
from core.ports import InboxPort, TokenCache

__all__ = ["EVENTS_PATH", "FeishuAdapter", "FeishuConfig", "create_feishu_adapter"]


def create_feishu_adapter(config: FeishuConfig, inbox: InboxPort, tokens: TokenCache) -> FeishuAdapter:
    return FeishuAdapter(config, inbox, tokens)
