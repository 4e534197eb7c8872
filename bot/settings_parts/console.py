"""The staff console /console/ (issue 22, bot/console/)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class ConsoleSettings(BaseSettings):
    console_link_minutes: float = Field(default=10.0, gt=0, description="A 后台 sign-in link works this long, "
                                                                        "once.")
    console_idle_minutes: float = Field(default=60.0, gt=0, description="A console session ends after this long "
                                                                        "without a request.")
    console_session_hours: float = Field(default=12.0, gt=0, description="A console session ends this long after "
                                                                         "sign-in whatever happens.")
