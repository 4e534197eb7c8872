"""SOP chat commands and the `ticketbot sop` CLI.

    SOP [工单号]                         technicians: the SOP card of their current ticket
    SOP 列表                             every SOP (key｜title｜steps)
    SOP 查看 <键>                         one SOP as a card; key = 分类 or 分类/故障类型
    SOP 导出 <键>                         one SOP as Markdown (edit it, then import it back)
    SOP 导入 <换行> <Markdown 或 YAML>     add or replace SOPs (admins)
    SOP 加步骤 <键> <内容>                append a step
    SOP 改步骤 <键> <序号> <内容>          replace step N
    SOP 删步骤 <键> <序号>                delete step N
    SOP 删除 <键>                         delete the whole SOP

    ticketbot sop import FILE.md|FILE.yaml      ticketbot sop export [KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bot.commands_lifecycle import split_number
from bot.conversation import Conversation, Incoming, text_command
from core.errors import InvalidInput
from core.lifecycle_sop import EditSop, ExportSop, ImportSops, ListSops, ShowSop
from core.model import Role

if TYPE_CHECKING:
    from bot.runtime import Runtime

SOP_HELP = ("SOP 命令：SOP 列表｜SOP 查看 <键>｜SOP 导出 <键>｜SOP 导入（换行后附 Markdown/YAML）｜"
            "SOP 加步骤 <键> <内容>｜SOP 改步骤 <键> <序号> <内容>｜SOP 删步骤 <键> <序号>｜SOP 删除 <键>。"
            "键为「分类」或「分类/故障类型」，例如 机械类/空调不制冷。")
_IMPORT = re.compile(r"^\s*(?:SOP|sop|作业指导)\s*导入[ \t]*\n?", re.IGNORECASE)


def _index(text: str) -> int:
    if not text.isdigit():
        raise InvalidInput(f"步骤序号应为数字：{text}。{SOP_HELP}")
    return int(text)


@text_command("SOP", "sop", "作业指导", summary="查看/维护 SOP")
async def _sop(conv: Conversation, inc: Incoming) -> None:
    args, person = inc.args, inc.person
    verb = args[0] if args else ""
    if not args or split_number(args)[0]:
        if person.role == Role.TECHNICIAN:
            await conv.run(ShowSop(number=split_number(args)[0]), person, inc.message)
        else:
            await conv.run(ListSops(), person, inc.message)
        return
    if verb in {"列表", "list"}:
        await conv.run(ListSops(), person, inc.message)
    elif verb in {"查看", "view"} and len(args) == 2:
        await conv.run(ShowSop(key=args[1]), person, inc.message)
    elif verb in {"导出", "export"} and len(args) == 2:
        await conv.run(ExportSop(args[1]), person, inc.message)
    elif verb in {"导入", "import"}:
        # The body keeps its line breaks: take it from the raw message, not the normalised text.
        body = _IMPORT.sub("", inc.message.text or "", count=1)
        await conv.run(ImportSops(body, source="chat"), person, inc.message)
    elif verb == "加步骤" and len(args) >= 3:
        await conv.run(EditSop(args[1], "add", None, " ".join(args[2:])), person, inc.message)
    elif verb == "改步骤" and len(args) >= 4:
        await conv.run(EditSop(args[1], "set", _index(args[2]), " ".join(args[3:])), person, inc.message)
    elif verb == "删步骤" and len(args) == 3:
        await conv.run(EditSop(args[1], "delete", _index(args[2])), person, inc.message)
    elif verb == "删除" and len(args) == 2:
        await conv.run(EditSop(args[1], "remove"), person, inc.message)
    else:
        raise InvalidInput(SOP_HELP)


# --- CLI ---------------------------------------------------------------------------------------

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
    from core.lifecycle_sop import load_library
    from core.service import SYSTEM_ACTOR, Context
    from core.sop import to_markdown

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
