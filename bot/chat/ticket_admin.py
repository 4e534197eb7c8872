"""Chat commands that correct or end a ticket (core: core/sla/replan.py, core/transitions.py).

    优先级 <工单号> 紧急|常规|咨询        staff: re-prioritise; the SLA deadlines and timers are re-planned
    影响 <工单号> 单用户|部门|全厂        staff: correct the impact; likewise
    取消工单 <工单号> <原因>              the customer before a technician accepted; staff at any open state
    咨询 <问题>                           a customer's question as a ticket of priority 咨询 (a question with
                                          no fault words is otherwise answered in the chat, not ticketed)
"""

from __future__ import annotations

from bot.chat.conversation import TICKET_NUMBER, Conversation, Incoming, text_command
from core.commands import CancelTicket, ChangePriority, ReportFault
from core.errors import InvalidInput
from core.model import Role

STAFF = {Role.SUPERVISOR, Role.ADMIN}
PRIORITY_USAGE = "优先级 工单号 紧急|常规|咨询"
IMPACT_USAGE = "影响 工单号 单用户|部门|全厂"
CANCEL_USAGE = "取消工单 工单号 原因"
CONSULT = "咨询"


def _number_and_rest(inc: Incoming, usage: str, *, rest_words: int | None) -> tuple[str, str]:
    """The ticket number and what follows it; `rest_words`: exactly that many words (None: any, at least one)."""
    args = inc.args
    fits = len(args) >= 2 if rest_words is None else len(args) == 1 + rest_words
    if not fits or not TICKET_NUMBER.fullmatch(args[0]):
        raise InvalidInput(f"用法：{usage}，例如：{usage.split('|')[0].replace('工单号', 'GD-20260101-0001')}")
    return args[0].upper(), " ".join(args[1:])


@text_command("优先级", roles=STAFF, usage=PRIORITY_USAGE, summary="调整工单优先级（SLA 随之重算）")
async def _priority(conv: Conversation, inc: Incoming) -> None:
    number, value = _number_and_rest(inc, PRIORITY_USAGE, rest_words=1)
    await conv.run(ChangePriority(number, priority=value), inc.person, inc.message)


@text_command("影响", "影响范围", roles=STAFF, usage=IMPACT_USAGE, summary="调整工单影响范围（SLA 随之重算）")
async def _impact(conv: Conversation, inc: Incoming) -> None:
    number, value = _number_and_rest(inc, IMPACT_USAGE, rest_words=1)
    await conv.run(ChangePriority(number, impact=value), inc.person, inc.message)


@text_command("取消工单", roles={Role.CUSTOMER, *STAFF}, usage=CANCEL_USAGE,
              summary="取消工单（客户在技师接单前；主管、管理员随时）",
              refusal="抱歉，工单只能由报修客户（技师接单前）或主管、管理员取消。如需取消，请联系主管。")
async def _cancel(conv: Conversation, inc: Incoming) -> None:
    if len(inc.args) == 1 and TICKET_NUMBER.fullmatch(inc.args[0]):  # the reason is asked for by the core
        await conv.run(CancelTicket(inc.args[0].upper(), ""), inc.person, inc.message)
        return
    number, reason = _number_and_rest(inc, CANCEL_USAGE, rest_words=None)
    await conv.run(CancelTicket(number, reason), inc.person, inc.message)


@text_command(CONSULT, roles={Role.CUSTOMER}, usage="咨询 问题", summary="登记一个咨询（使用方法、设置等）",
              refusal="抱歉，「咨询」用于客户登记咨询问题。")
async def _consult(conv: Conversation, inc: Incoming) -> None:
    if not inc.args:
        raise InvalidInput("请写明要咨询的问题，例如「咨询 空调滤网多久换一次」。")
    await conv.run(ReportFault(inc.text, priority=CONSULT), inc.person, inc.message)
