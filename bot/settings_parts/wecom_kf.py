"""微信客服 (WeCom customer service accounts): WeChat users outside the company (issue 21)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class WecomKfSettings(BaseSettings):
    wecom_kf_secret: SecretStr | None = Field(
        default=None, description="The 微信客服 secret: only its access token may call the kf/ APIs.")
    wecom_kf_open_kfid: str = Field(
        default="", description="The 微信客服 account(s) (open_kfid), comma-separated; with WECOM_KF_SECRET "
                                "(and the WeCom app's corp id, token, AES key) the 微信客服 adapter is active.")
