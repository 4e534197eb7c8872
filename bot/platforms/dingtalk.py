"""Composition of the DingTalk adapter: settings → config, the runtime's inbox and token cache.

Imported by bot/runtime.py only when DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET are set. The
API host comes from the SDK's own DINGTALK_OPENAPI_ENDPOINT variable (read by DingTalkConfig), so
one variable points both the stream connection and the outbound calls at the same host.
"""

from __future__ import annotations

from typing import Any

from adapters.base import PlatformAdapter
from adapters.dingtalk import DingTalkConfig, create_dingtalk_adapter


class DingTalkNotConfigured(RuntimeError):
    """build_adapter was called without DingTalk credentials."""


def build_adapter(runtime: Any) -> PlatformAdapter:
    config = DingTalkConfig.from_settings(runtime.settings)
    if config is None:
        raise DingTalkNotConfigured("DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET must both be set")
    return create_dingtalk_adapter(config, runtime.inbox, runtime.tokens)
