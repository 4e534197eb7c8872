"""`根因 <工单号> <原因>`: file a breach's root cause by chat.

WeCom cards cannot take typed text, so the 超时根因分析 task card cannot be filled in there;
this command submits the same card (same validation, same audit) from any platform.
"""

from __future__ import annotations

from bot.chat.conversation import Conversation, Incoming, text_command
from core.commands import PressCardAction
from core.model import Role
from core.sla.tracking import TRACKS

USAGE = "用法：根因 <工单号> <超时根本原因>，例如：根因 GD-20261121-0001 夜班无指定接单人"


@text_command("根因", "超时根因", roles={Role.SUPERVISOR, Role.ADMIN}, usage="根因 工单号 原因",
              summary="提交超时根因分析")
async def _root_cause(conv: Conversation, inc: Incoming) -> None:
    if len(inc.args) < 2:
        await conv.reply(inc.person, inc.message, USAGE)
        return
    number, reason = inc.args[0].upper(), " ".join(inc.args[1:])
    async with conv.service.uow_factory() as uow:
        ticket = await uow.get_ticket(number)
    state = (ticket.data.get("sla") if ticket else None) or {}
    open_tasks = [state[t]["root_cause"] for t in TRACKS
                  if isinstance(state.get(t), dict) and (state[t].get("root_cause") or {}).get("reason") is None
                  and state[t].get("root_cause")]
    if not open_tasks:
        await conv.reply(inc.person, inc.message, f"工单 {number} 没有待填写的超时根因分析。")
        return
    await conv.run(PressCardAction(open_tasks[0]["card_id"], "submit", {"reason": reason}), inc.person, inc.message)
