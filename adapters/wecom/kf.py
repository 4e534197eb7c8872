"""The 微信客服 adapter (platform "wecom_kf"): WeChat users outside the company.

`create_kf_adapter(config, inbox, tokens, state, …) -> KfAdapter`. Its callback is the WeCom
app's `/wecom/callback` (same Token/AES key, same verification and freshness rules): when the
WeCom app adapter is configured too, the kf adapter listens on the app's callback, otherwise it
registers the route itself (and ignores app messages). `sender` is the ChannelSender for
"wecom_kf"; `sync` pulls messages (adapters/wecom/kf_sync.py); `contact_way(store_code)` gives
the store's entry URL (kf/add_contact_way, scene = store code, cached in the state).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from adapters.base import adapter_logger
from adapters.wecom.api import SessionFactory, WeComApi
from adapters.wecom.kf_config import PLATFORM, KfConfig
from adapters.wecom.kf_sender import Fallback, KfSender, Trail
from adapters.wecom.kf_state import KfState
from adapters.wecom.kf_sync import KfSync, OnEnter
from core.inbound import InboundMessage
from core.ports import ChannelSender, InboxPort, TokenCache

if TYPE_CHECKING:
    from aiohttp import web

log = adapter_logger(__name__)

_SCENE = re.compile(r"[0-9A-Za-z_-]{1,32}")


class _AppMessagesIgnored:
    """The inbox of a kf-only callback: WeCom app messages have no adapter here."""

    async def accept(self, message: InboundMessage) -> bool:
        log.info("wecom_kf: WeCom app message %s ignored (the WeCom app adapter is not configured)",
                 message.event_key)
        return False


class KfAdapter:
    platform = PLATFORM

    def __init__(self, config: KfConfig, api: WeComApi, sync: KfSync, sender: KfSender, state: KfState,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.api = api
        self.sync = sync
        self.kf_sender = sender
        self.sender: ChannelSender = sender
        self._state = state
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        from adapters.wecom.callback import CALLBACK_APP_KEY, WeComCallback

        callback = app.get(CALLBACK_APP_KEY)
        if callback is None:
            callback = WeComCallback(self.config.api_config(), _AppMessagesIgnored(), clock=self._clock)
            callback.add_routes(app)
        callback.kf_listener = self.on_callback

    def on_callback(self, message: dict[str, Any]) -> None:
        open_kfid = str(message.get("OpenKfId") or "").strip()
        token = str(message.get("Token") or "").strip()
        if open_kfid not in self.config.open_kfids:
            log.warning("wecom_kf: kf_msg_or_event for unknown open_kfid %r ignored", open_kfid)
            return
        self.sync.request(open_kfid, token)

    async def contact_way(self, store_code: str) -> str:
        """The store's 微信客服 entry URL, scene_param = store code (enter_session brings it back)."""
        base = await self._state.contact_way(store_code)
        if base is None:
            open_kfid = sorted(self.config.open_kfids)[0]
            # scene: at most 32 of [0-9A-Za-z_-]; the store code itself travels in scene_param.
            scene = store_code if _SCENE.fullmatch(store_code) else _hashed_scene(store_code)
            data = await self.api.post("kf/add_contact_way", {"open_kfid": open_kfid, "scene": scene})
            base = str(data.get("url") or "")
            if not base:
                raise ValueError(f"kf/add_contact_way answered without a url for {store_code!r}")
            await self._state.save_contact_way(store_code, open_kfid, base, datetime.fromtimestamp(self._clock(), UTC))
        return f"{base}{'&' if '?' in base else '?'}scene_param={quote(store_code, safe='')}"

    async def start(self) -> None:
        """Nothing to connect: WeCom pushes callbacks over HTTP."""

    async def stop(self) -> None:
        await self.sync.stop()
        await self.kf_sender.close()


def create_kf_adapter(
    config: KfConfig,
    inbox: InboxPort,
    tokens: TokenCache,
    state: KfState,
    *,
    http_session_factory: SessionFactory | None = None,
    clock: Callable[[], float] = time.time,
    on_enter: OnEnter | None = None,
    fallback: Fallback | None = None,
    trail: Trail | None = None,
) -> KfAdapter:
    api = WeComApi(config.api_config(), tokens, http_session_factory)
    sender = KfSender(config, api, state, fallback=fallback, trail=trail, clock=clock)

    async def send_polite(external_id: str, text: str) -> None:
        try:
            await sender.send_text(external_id, text)
        except Exception as exc:  # noqa: BLE001 - a courtesy answer; the sync goes on
            log.warning("wecom_kf: could not answer %s: %r", external_id, exc)

    async def release(external_id: str) -> None:
        try:
            await sender.release_held(external_id)
        except Exception as exc:  # noqa: BLE001 - held again; tried with the next message
            log.warning("wecom_kf: held notices for %s not sent: %r", external_id, exc)

    def customer_spoke(external_id: str) -> None:
        _spawn(release(external_id))

    sync = KfSync(config, api, state, inbox, on_enter=on_enter, send_polite=send_polite,
                  customer_spoke=customer_spoke, clock=clock)
    return KfAdapter(config, api, sync, sender, state, clock)


def _hashed_scene(store_code: str) -> str:
    return "s" + hashlib.sha1(store_code.encode()).hexdigest()[:20]


_background: set[Any] = set()


def _spawn(coro: Any) -> None:
    import asyncio

    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
