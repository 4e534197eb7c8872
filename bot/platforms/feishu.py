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
    from bot.settings import Settings


def config_from_settings(settings: Settings) -> FeishuConfig:
    return FeishuConfig(
        app_id=settings.feishu_app_id or "",
        app_secret=settings.feishu_app_secret or "",
        encrypt_key=settings.feishu_encrypt_key or "",
        verification_token=settings.feishu_verification_token or "",
        domain=settings.feishu_domain,
        long_connection=settings.feishu_long_connection,
        max_body_bytes=settings.max_body_bytes,
    )


def build_adapter(runtime: Runtime) -> PlatformAdapter:
    config = config_from_settings(runtime.settings)
    return create_feishu_adapter(config, runtime.inbox, runtime.tokens)
