"""DingTalk adapter settings (enterprise internal app, Stream mode)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

DEFAULT_OPENAPI_ENDPOINT = "https://api.dingtalk.com"


def _endpoint_from_env() -> str:
    # The SDK reads the same variable (once, at import time); we read it per config so that one
    # variable points both the stream connection and our aiohttp sender at the same host.
    return os.environ.get("DINGTALK_OPENAPI_ENDPOINT", DEFAULT_OPENAPI_ENDPOINT).rstrip("/")


@dataclass(frozen=True, slots=True)
class DingTalkConfig:
    client_id: str  # AppKey
    client_secret: str  # AppSecret
    # For enterprise internal apps DingTalk uses the AppKey as the robot code unless told otherwise.
    robot_code: str = ""
    # Optional card-platform template (see README.md in this folder). Unset: template-less action cards.
    card_template_id: str | None = None
    openapi_endpoint: str = field(default_factory=_endpoint_from_env)
    # How long a stream frame waits for the inbox commit before we answer "error" (platform redelivers events).
    accept_timeout_s: float = 10.0
    http_timeout_s: float = 10.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    # DING kind for strong reminders: 1 in-app, 2 SMS, 3 phone (2/3 need a purchased quota).
    ding_remind_type: int = 1

    def __post_init__(self) -> None:
        if not self.robot_code:
            object.__setattr__(self, "robot_code", self.client_id)
        object.__setattr__(self, "openapi_endpoint", self.openapi_endpoint.rstrip("/"))

    @classmethod
    def from_settings(cls, settings: Any) -> DingTalkConfig | None:
        """Build from bot.settings.Settings (duck-typed); None when DingTalk is not configured."""
        if not (settings.dingtalk_client_id and settings.dingtalk_client_secret):
            return None
        return cls(
            client_id=settings.dingtalk_client_id,
            client_secret=settings.dingtalk_client_secret,
            robot_code=settings.dingtalk_robot_code or "",
            card_template_id=settings.dingtalk_card_template_id or None,
        )
