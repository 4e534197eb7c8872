"""微信客服 (WeCom customer service accounts) settings, as the adapter needs them."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.wecom.config import DEFAULT_API_BASE, WeComConfig

PLATFORM = "wecom_kf"
# Not an AgentId (those are digits): keeps the kf token's cache key apart from any app's.
KF_TOKEN_SLOT = "kf"


@dataclass(frozen=True, slots=True)
class KfConfig:
    corp_id: str
    secret: str  # the 微信客服 secret: only its access token may call kf/*
    token: str  # callback Token of the app that receives kf_msg_or_event (signature)
    encoding_aes_key: str
    open_kfids: frozenset[str]
    api_base: str = DEFAULT_API_BASE
    sync_limit: int = 1000  # kf/sync_msg's maximum page
    # enter_session's welcome_code may be used once, within 20 s of the event.
    welcome_code_ttl_s: float = 20.0
    http_timeout_s: float = 10.0

    def api_config(self) -> WeComConfig:
        """The WeCom API/callback config with the kf secret (and a token cache key of its own)."""
        return WeComConfig(corp_id=self.corp_id, agent_id=KF_TOKEN_SLOT, secret=self.secret, token=self.token,
                           encoding_aes_key=self.encoding_aes_key, api_base=self.api_base,
                           http_timeout_s=self.http_timeout_s)


def external_id(open_kfid: str, external_userid: str) -> str:
    """Our identity of a WeChat customer: the same WeChat user is another external_userid per corp,
    and answers must go out through the account they wrote to."""
    return f"{open_kfid}:{external_userid}"


def split_external_id(value: str) -> tuple[str, str]:
    open_kfid, sep, user = value.partition(":")
    if not sep or not open_kfid or not user:
        raise ValueError(f"not a 微信客服 identity: {value!r}")
    return open_kfid, user
