"""What every platform adapter offers the composition root (bot/), and the adapters' logger."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Protocol

from core.ports import ChannelSender

if TYPE_CHECKING:
    from aiohttp import web


class PlatformAdapter(Protocol):
    platform: str  # "wecom", "feishu", "dingtalk", "local"
    sender: ChannelSender

    def add_routes(self, app: web.Application) -> None:
        """Register HTTP endpoints (callbacks); may do nothing (DingTalk Stream mode)."""
        ...

    async def start(self) -> None:
        """Start background connections (stream/long connection). Called once at app start."""
        ...

    async def stop(self) -> None: ...


# Line breaks and other control characters (C0, DEL, NEL, the Unicode line/paragraph separators).
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


class OneLineFilter(logging.Filter):
    """Makes every record one line: control characters in the formatted message are escaped as in
    repr ("\\n", "\\x1b"). Adapters log what platforms and users send (event types, ids, texts); with
    this, such a value can never start a forged log line, whatever format the call site used.
    Tracebacks (exc_info) are the formatter's and stay as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _CONTROL.search(message):
            record.msg, record.args = _CONTROL.sub(_escape, message), None
        return True


_ONE_LINE = OneLineFilter()


def adapter_logger(name: str) -> logging.Logger:
    """The logger every adapter module uses (tests/test_adapter_log_injection.py checks it)."""
    log = logging.getLogger(name)
    if _ONE_LINE not in log.filters:
        log.addFilter(_ONE_LINE)
    return log
