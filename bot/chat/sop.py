"""SOP chat commands (the `ticketbot sop` CLI is bot/cli/sop.py).

    SOP [工单号]                         technicians: the SOP card of their current ticket
    SOP 列表                             every SOP (key｜title｜steps)
    SOP 查看 <键>                         one SOP as a card; key = 分类 or 分类/故障类型
    SOP 导出 <键>                         one SOP as Markdown (edit it, then import it back)
    SOP 导入 <换行> <Markdown 或 YAML>     add or replace SOPs (admins)
    SOP 加步骤 <键> <内容>                append a step
    SOP 改步骤 <键> <序号> <内容>          replace step N
    SOP 删步骤 <键> <序号>                delete step N
    SOP 删除 <键>                         delete the whole SOP
"""

from __future__ import annotations

import re

from bot.chat.conversation import Conversation, HelpLine, Incoming, text_command
from bot.chat.lifecycle import split_number
from core.errors import InvalidInput
from core.lifecycle.sop_handlers import EDITORS, EditSop, ExportSop, ImportSops, ListSops, ShowSop
from core.model import Role

SOP_HELP = ("SOP 命令：SOP 列表｜SOP 查看 <键>｜SOP 导出 <键>｜SOP 导入（换行后附 Markdown/YAML）｜"
            "SOP 加步骤 <键> <内容>｜SOP 改步骤 <键> <序号> <内容>｜SOP 删步骤 <键> <序号>｜SOP 删除 <键>。"
            "键为「分类」或「分类/故障类型」，例如 机械类/空调不制冷。")
STAFF = frozenset(Role) - {Role.CUSTOMER}
_IMPORT = re.compile(r"^\s*(?:SOP|sop|作业指导)\s*导入[ \t]*\n?", re.IGNORECASE)


def _index(text: str) -> int:
    if not text.isdigit():
        raise InvalidInput(f"步骤序号应为数字：{text}。{SOP_HELP}")
    return int(text)


# Reading is open to everyone (editing is checked by the core); 帮助 shows it to the staff only.
@text_command("SOP", "sop", "作业指导", help=(
    HelpLine("SOP [工单号]", "当前工单的标准作业流程", frozenset({Role.TECHNICIAN})),
    HelpLine("SOP 列表｜SOP 查看 键｜SOP 导出 键", "查看 SOP 知识库", STAFF),
    HelpLine("SOP 导入｜SOP 加步骤/改步骤/删步骤/删除", "维护 SOP 知识库", frozenset(EDITORS)),
))
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
