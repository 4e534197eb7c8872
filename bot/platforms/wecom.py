"""WeCom wiring for the composition root: settings → WeComConfig → adapter on the runtime's inbox.

Imported by bot.runtime only when all five WECOM_* credentials are set. The adapter shares
the runtime's clock (callback freshness window, response_code age), its token cache (Redis
when REDIS_URL is set, so every process uses one access token) and, with Redis, one
per-recipient message budget for all processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.base import PlatformAdapter
from adapters.wecom import WeComConfig, create_wecom_adapter
from adapters.wecom.budget import MemoryRecipientBudget, RecipientBudget, RedisRecipientBudget

if TYPE_CHECKING:
    from bot.runtime import Runtime
    from bot.settings import Settings

AES_KEY_LENGTH = 43


class WeComSettingsError(ValueError):
    """WECOM_* settings that can never work; raised at start-up, not at the first callback."""


def config_from_settings(settings: Settings) -> WeComConfig:
    values = {
        "WECOM_CORP_ID": settings.wecom_corp_id,
        "WECOM_AGENT_ID": settings.wecom_agent_id,
        "WECOM_SECRET": settings.wecom_secret,
        "WECOM_TOKEN": settings.wecom_token,
        "WECOM_ENCODING_AES_KEY": settings.wecom_encoding_aes_key,
    }
    clean = {name: (value or "").strip() for name, value in values.items()}
    if missing := [name for name, value in clean.items() if not value]:
        raise WeComSettingsError(f"missing WeCom settings: {', '.join(missing)}")
    if not clean["WECOM_AGENT_ID"].isdigit():
        raise WeComSettingsError("WECOM_AGENT_ID must be the app's numeric AgentId")
    if len(clean["WECOM_ENCODING_AES_KEY"]) != AES_KEY_LENGTH:
        raise WeComSettingsError(f"WECOM_ENCODING_AES_KEY must be {AES_KEY_LENGTH} characters")
    return WeComConfig(
        corp_id=clean["WECOM_CORP_ID"],
        agent_id=clean["WECOM_AGENT_ID"],
        secret=clean["WECOM_SECRET"],
        token=clean["WECOM_TOKEN"],
        encoding_aes_key=clean["WECOM_ENCODING_AES_KEY"],
        api_base=settings.wecom_api_base,
    )


def build_adapter(runtime: Runtime) -> PlatformAdapter:
    config = config_from_settings(runtime.settings)

    def clock() -> float:
        return runtime.clock.now().timestamp()

    budget: RecipientBudget = (
        RedisRecipientBudget(runtime.redis, clock=clock)
        if runtime.redis is not None
        else MemoryRecipientBudget(clock=clock)
    )
    return create_wecom_adapter(config, runtime.inbox, runtime.tokens, clock=clock, budget=budget)
