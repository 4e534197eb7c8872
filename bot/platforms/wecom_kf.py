"""微信客服 wiring for the composition root: settings → KfConfig → adapter on the runtime's inbox.

Imported by bot.runtime only when WECOM_KF_SECRET, WECOM_KF_OPEN_KFID and the WeCom callback's
corp id, Token and AES key are set. The adapter shares the runtime's token cache (its own key:
the kf secret has its own access token), keeps cursors and budgets in the database
(storage/kf_store.py), records the budget in tickets' trails (core RecordDelivery) and falls back
to SMS through bot.sms.fallback when that module exists and SMS is configured.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from adapters.base import PlatformAdapter
from adapters.wecom.kf import KfAdapter, create_kf_adapter
from adapters.wecom.kf_config import PLATFORM, KfConfig
from adapters.wecom.kf_state import BUDGET_MESSAGES, BUDGET_WINDOW_S
from bot.platforms.wecom import AES_KEY_LENGTH, WeComSettingsError
from core.audit.deliveries import RecordDelivery
from core.model import Person, Role
from core.ports import OutboundDelivery
from core.service import SYSTEM_ACTOR
from storage.kf_store import SqlKfState
from storage.tables import StoreRow

if TYPE_CHECKING:
    from bot.runtime import Runtime
    from bot.settings import Settings

log = logging.getLogger(__name__)


def kf_config_from_settings(settings: Settings) -> KfConfig:
    secret = settings.wecom_kf_secret.get_secret_value().strip() if settings.wecom_kf_secret else ""
    accounts = frozenset(a.strip() for a in settings.wecom_kf_open_kfid.split(",") if a.strip())
    values = {"WECOM_KF_SECRET": secret, "WECOM_KF_OPEN_KFID": ",".join(sorted(accounts)),
              "WECOM_CORP_ID": (settings.wecom_corp_id or "").strip(),
              "WECOM_TOKEN": (settings.wecom_token or "").strip(),
              "WECOM_ENCODING_AES_KEY": (settings.wecom_encoding_aes_key or "").strip()}
    if missing := [name for name, value in values.items() if not value]:
        raise WeComSettingsError(f"missing 微信客服 settings: {', '.join(missing)}")
    if len(values["WECOM_ENCODING_AES_KEY"]) != AES_KEY_LENGTH:
        raise WeComSettingsError(f"WECOM_ENCODING_AES_KEY must be {AES_KEY_LENGTH} characters")
    return KfConfig(corp_id=values["WECOM_CORP_ID"], secret=secret, token=values["WECOM_TOKEN"],
                    encoding_aes_key=values["WECOM_ENCODING_AES_KEY"], open_kfids=accounts,
                    api_base=settings.wecom_api_base)


def kf_state(sessions: Any) -> SqlKfState:
    return SqlKfState(sessions, messages=BUDGET_MESSAGES, window=timedelta(seconds=BUDGET_WINDOW_S))


def build_adapter(runtime: Runtime) -> PlatformAdapter:
    return build_kf_adapter(runtime)


def build_kf_adapter(runtime: Runtime) -> KfAdapter:
    config = kf_config_from_settings(runtime.settings)

    def clock() -> float:
        return runtime.clock.now().timestamp()

    async def on_enter(external_id: str, store_code: str) -> None:
        await remember_store(runtime, external_id, store_code)

    async def fallback(delivery: OutboundDelivery) -> bool:
        try:
            from bot.sms.fallback import queue_sms_instead  # helper C's module; absent = no SMS
        except ImportError:
            return False
        return bool(await queue_sms_instead(runtime, delivery))

    async def trail(ticket_number: str, person_id: str, kind: str, details: dict[str, Any]) -> None:
        # The channel's step, recorded by the system like the SMS sender's (core/audit/deliveries.py).
        outcome = kind.removeprefix(f"{PLATFORM}_")
        await runtime.service.handle(RecordDelivery(ticket_number, PLATFORM, outcome, details), SYSTEM_ACTOR)

    return create_kf_adapter(config, runtime.inbox, runtime.tokens, kf_state(runtime.sessions), clock=clock,
                             on_enter=on_enter, fallback=fallback, trail=trail)


async def remember_store(runtime: Runtime, external_id: str, store_code: str) -> None:
    """enter_session from a store's QR code: the customer belongs to that store (their tickets
    are prefilled with it). A new WeChat user becomes a new customer here, as in the playground."""
    async with runtime.sessions() as session:
        store = await session.get(StoreRow, store_code)
    if store is None or not store.active:
        log.warning("wecom_kf: enter_session with unknown store %r from %s", store_code, external_id)
        return
    for _attempt in (1, 2):  # two syncs may create the same customer at once: the second one updates
        try:
            async with runtime.uow() as uow:
                person = await uow.person_by_identity(PLATFORM, external_id)
                if person is None:
                    person = Person(id=f"c-{uuid.uuid4().hex[:16]}", name=f"客户{external_id[-4:]}",
                                    role=Role.CUSTOMER, store_id=store.id, preferred_channel=PLATFORM)
                    await uow.add_person(person, {PLATFORM: external_id})
                else:
                    person.store_id = store.id
                    person.preferred_channel = PLATFORM
                    await uow.save_person(person)
                await uow.commit()
            return
        except Exception:
            if _attempt == 2:
                raise
