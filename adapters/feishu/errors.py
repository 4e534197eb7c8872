"""Why an inbound Feishu request was refused. One root for the package."""

from __future__ import annotations

from typing import Any


class FeishuError(Exception):
    def __init__(self, reason: str, **data: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


class MalformedEvent(FeishuError):
    """Bad JSON, undecryptable, or an event without the fields its type promises (HTTP 400)."""


class EventRejected(FeishuError):
    """Failed authentication: signature, token or freshness (HTTP 401)."""
