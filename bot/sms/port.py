"""The SMS port: what the channel and the codes need from a provider, whichever SDK is behind it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class SmsProvider(Protocol):
    name: str  # "aliyun" | "tencent"

    async def send(self, phone: str, template_code: str, params: Mapping[str, str]) -> str:
        """Send one templated SMS to a mainland mobile number (11 digits, no +86). Returns the
        provider's message id. Raises bot.sms.errors.SmsRetryable or SmsPermanent."""
        ...
