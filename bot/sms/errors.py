"""SMS errors. One root; each carries what happened (provider, code) and a Chinese message for people."""

from __future__ import annotations

from typing import Any


class SmsError(Exception):
    """Root of SMS failures. `user_message` is safe to show the person who asked (Chinese)."""

    def __init__(self, reason: str, *, user_message: str = "短信发送失败，请稍后再试。", **data: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.user_message = user_message
        self.data = data


class SmsNotConfigured(SmsError):
    """SMS_PROVIDER is unset, or its keys/templates are missing."""


class SmsRetryable(SmsError):
    """The provider may accept it later: throttled, unreachable, a 5xx."""

    def __init__(self, reason: str, *, retry_after_s: float | None = None, **data: Any) -> None:
        super().__init__(reason, **data)
        self.retry_after_s = retry_after_s


class SmsPermanent(SmsError):
    """The provider will never accept it: a bad template, signature or number, bad credentials."""


class SmsLimitReached(SmsError):
    """Our own per-phone (or per-address) limit: nothing was sent."""

    def __init__(self, reason: str, *, retry_after_s: float, **data: Any) -> None:
        minutes = max(1, round(retry_after_s / 60))
        super().__init__(reason, user_message=f"发送过于频繁，请约 {minutes} 分钟后再试。", **data)
        self.retry_after_s = retry_after_s


class BadPhone(SmsError):
    """Not a mainland mobile number."""
