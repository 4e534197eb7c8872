"""WeCom (企业微信) self-built application settings, as the adapter needs them."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"


@dataclass(frozen=True, slots=True)
class WeComConfig:
    corp_id: str
    agent_id: str
    secret: str
    token: str  # callback Token (signature)
    encoding_aes_key: str  # callback EncodingAESKey (43 chars)
    api_base: str = DEFAULT_API_BASE
    # wechatpy never checks the timestamp: a captured callback could be replayed forever.
    timestamp_window_s: float = 300.0
    # WeCom callbacks are a few KB; anything near this is not WeCom.
    max_body_bytes: int = 64 * 1024
    http_timeout_s: float = 10.0
    # text_notice cards must carry a click target (card_action); point it at the ticket UI.
    card_url: str = "https://work.weixin.qq.com/"
    # Shown as the card's source line.
    source_desc: str = "工单助手"
    # WeCom drops a message identical to one sent to the same person within this interval.
    # Long enough to swallow the outbox's quick retries after a lost answer, short enough that
    # the same answer to a question asked again a few minutes later still arrives.
    duplicate_check_interval_s: int = 300

    @property
    def api_base_url(self) -> str:
        return self.api_base if self.api_base.endswith("/") else self.api_base + "/"

    @property
    def agent_id_int(self) -> int:
        return int(self.agent_id)

    @property
    def token_cache_key(self) -> str:
        # One token per (corp, app secret): agents of the same corp have different secrets.
        return f"wecom:access_token:{self.corp_id}:{self.agent_id}"
