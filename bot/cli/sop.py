"""`ticketbot sop import FILE.md|FILE.yaml` and `ticketbot sop export [KEY]`: the SOP knowledge base as files."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.lifecycle.sop_handlers import ImportSops

if TYPE_CHECKING:
    from bot.runtime import Runtime


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sop = subparsers.add_parser("sop", help="SOP knowledge base: import / export")
    sop_sub = sop.add_subparsers(dest="sop_command", metavar="ACTION")
    imp = sop_sub.add_parser("import", help="import SOPs from a Markdown or YAML file")
    imp.add_argument("file", type=Path)
    imp.set_defaults(func=cmd_import)
    exp = sop_sub.add_parser("export", help="print SOPs as Markdown (all, or one key)")
    exp.add_argument("key", nargs="?")
    exp.set_defaults(func=cmd_export)


def _run(job: Callable[[Runtime], Awaitable[int]]) -> int:
    from bot.runtime import Runtime
    from bot.settings import Settings
    from storage.migrate import upgrade

    settings = Settings()
    upgrade(settings.resolved_database_url())

    async def main() -> int:
        runtime = Runtime(settings)
        try:
            return await job(runtime)
        finally:
            await runtime.engine.dispose()

    return asyncio.run(main())


def cmd_import(args: argparse.Namespace) -> int:
    from core.errors import TicketbotError
    from core.service import SYSTEM_ACTOR

    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        print(f"cannot read {args.file}: {error}", file=sys.stderr)
        return 1

    async def job(runtime: Runtime) -> int:
        try:
            version = await runtime.service.handle(ImportSops(text, source=args.file.name), SYSTEM_ACTOR)
        except TicketbotError as error:
            print(error.user_message, file=sys.stderr)
            return 1
        print(f"SOP library is now at version {version}")
        return 0

    return _run(job)


def cmd_export(args: argparse.Namespace) -> int:
    from core.lifecycle.sop import to_markdown
    from core.lifecycle.sop_handlers import load_library
    from core.service import SYSTEM_ACTOR, Context

    async def job(runtime: Runtime) -> int:
        async with runtime.uow() as uow:
            ctx = Context(uow=uow, clock=runtime.clock, actor=SYSTEM_ACTOR, service=runtime.service)
            _version, library = await load_library(ctx)
        sops = [s for s in library.sops if args.key in {None, s.key}]
        if not sops:
            print(f"no SOP {args.key}", file=sys.stderr)
            return 1
        print("\n".join(to_markdown(s) for s in sops))
        return 0

    return _run(job)
