"""SMS wiring for the composition root: SMS_PROVIDER set → the "sms" channel's adapter.

Imported by bot.runtime only when SMS_PROVIDER is set. Nothing comes in by SMS: the adapter is a
sender only. Incomplete settings fail at start-up, not at the first SMS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from adapters.base import PlatformAdapter
from bot.sms.errors import SmsNotConfigured
from bot.sms.sender import CHANNEL, SmsSender
from bot.sms.services import sms_of
from core.ports import ChannelSender

if TYPE_CHECKING:
    from bot.runtime import Runtime


class SmsAdapter:
    platform = CHANNEL

    def __init__(self, runtime: Runtime) -> None:
        self.sender: ChannelSender = SmsSender(runtime)

    def add_routes(self, app: web.Application) -> None:
        """SMS receives nothing (delivery receipts are the provider console's business)."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def build_adapter(runtime: Runtime) -> PlatformAdapter:
    if not runtime.settings.sms_template_code_notice:
        raise SmsNotConfigured("SMS_PROVIDER is set but SMS_TEMPLATE_CODE_NOTICE is not")
    sms_of(runtime)  # the provider's keys are checked now
    return SmsAdapter(runtime)
