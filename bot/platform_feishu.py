"""Feishu wiring for the composition root: settings → FeishuConfig → adapter on the runtime's inbox.

Imported by bot.runtime only when FEISHU_APP_ID and FEISHU_APP_SECRET are set. Importing it
does not import lark_oapi: only long-connection mode does, in its own thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.base import PlatformAdapter
from adapters.feishu import FeishuConfig, create_feishu_adapter

if TYPE_CHECKING:
    from bot.runtime import Runtime


def build_adapter(runtime: Runtime) -> PlatformAdapter:
    config = FeishuConfig.from_settings(runtime.settings)
    return create_feishu_adapter(config, runtime.inbox, runtime.tokens)
