"""`ticketbot dingtalk`: the DingTalk stream client and the DingTalk outbox in a process of their own.

DingTalk delivers each stream message to one random connection of an app, so a deployment with
several web processes runs the stream in exactly one place: leave DINGTALK_* unset for `serve`
and run this command once, with them set. It runs the stream client, processes the inbox rows the
stream commits (the conversation), sweeps rows a crash left behind, and delivers the outbox rows
of the `dingtalk` channel. Timers stay with `serve`/`worker`; their notifications reach DingTalk
users through the outbox, which this process delivers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from bot.settings import Settings

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

# Other platforms' settings are blanked so that this process builds and starts DingTalk only.
_OTHER_PLATFORMS = {
    "wecom_corp_id": None,
    "wecom_agent_id": None,
    "wecom_secret": None,
    "wecom_token": None,
    "wecom_encoding_aes_key": None,
    "feishu_app_id": None,
    "feishu_app_secret": None,
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dingtalk", help="run only the DingTalk stream client, its inbox processing and the DingTalk outbox"
    )
    parser.set_defaults(func=cmd_dingtalk)


def cmd_dingtalk(_args: argparse.Namespace) -> int:
    settings = Settings()
    if not settings.dingtalk_enabled:
        print("DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET must be set for `ticketbot dingtalk`")
        return 2
    return asyncio.run(run_dingtalk(settings))


async def run_dingtalk(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until `stop` is set (or SIGINT/SIGTERM arrives)."""
    from bot.runtime import Runtime

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread / not POSIX
            loop.add_signal_handler(signum, stop.set)
    runtime = Runtime(settings.model_copy(update=_OTHER_PLATFORMS))
    # Only DingTalk runs here, but messages this process writes may be for people reached on the
    # other configured platforms (delivered by `ticketbot serve`).
    runtime.channels = settings.delivery_channels()
    tasks: list[asyncio.Task[None]] = []
    try:
        await runtime.prepare_database()
        await runtime.start(background=False)
        tasks = [
            loop.create_task(runtime.dispatcher.run_forever()),
            loop.create_task(_sweep_forever(runtime)),
            loop.create_task(runtime.rulebook.warm()),
        ]
        print("ticketbot dingtalk: stream client running (outbox channel: dingtalk)", flush=True)
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await runtime.stop()
    print("ticketbot dingtalk: stopped", flush=True)
    return 0


async def _sweep_forever(runtime: Runtime, every_s: float = 2.0) -> None:
    """Inbox rows a crash left unprocessed, and rule changes made in other processes."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await runtime.processor.sweep()
            async with runtime.uow() as uow:
                await runtime.rulebook.refresh(uow)
        except Exception:
            log.exception("dingtalk: sweep failed")
