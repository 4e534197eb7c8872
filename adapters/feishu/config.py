"""Feishu adapter configuration (built from the settings by the composition root: bot/platforms/feishu.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FeishuConfig:
    app_id: str
    app_secret: str
    # Empty: events arrive in plaintext and unsigned (then a verification token is a must).
    encrypt_key: str = ""
    verification_token: str = ""
    # https://open.feishu.cn, https://open.larksuite.com, or a local fake in tests.
    domain: str = "https://open.feishu.cn"
    long_connection: bool = False
    # Signed requests older (or newer) than this are replays: rejected.
    freshness_window_s: float = 300.0
    max_body_bytes: int = 1_048_576
    # The bot's own open_id, to tell "@bot" from other mentions in groups. Fetched from
    # /bot/v3/info at start when empty.
    bot_open_id: str = ""
    # Outbound: per user / per chat limit documented by Feishu (5 QPS).
    per_target_qps: float = 5.0
    http_timeout_s: float = 10.0

    @property
    def api_base(self) -> str:
        return self.domain.rstrip("/") + "/open-apis"
