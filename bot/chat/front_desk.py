"""Front desk (进店登记) and the in-person signature (core: core/intake/front_desk.py, core/lifecycle/signoff.py).

    代客报修 <手机号或客户编号> [新问题] <故障描述>   staff: register a fault for a customer (found by id or
                                                  phone; a new phone is a new customer); 新问题: a ticket of
                                                  its own even when the customer has a similar open one
    现场签字 [工单号]                               the ticket's technician: a sign-off card to hand to the
                                                  customer, whose signature is recorded as given in person
"""

from __future__ import annotations

from bot.chat.conversation import TICKET_NUMBER, Conversation, Incoming, text_command
from core.commands import RegisterForCustomer
from core.errors import InvalidInput
from core.intake.tickets import FRONT_DESK_USAGE
from core.lifecycle.signoff import OpenInPersonSignoff
from core.model import Role

STAFF = {Role.TECHNICIAN, Role.SUPERVISOR, Role.ADMIN, Role.WAREHOUSE, Role.QUALITY}
NEW_PROBLEM = "新问题"


@text_command("代客报修", "进店登记", roles=STAFF, usage="代客报修 手机号或客户编号 故障描述",
              summary="为到店或来电的客户登记报修（客户本人签字结案）",
              refusal="抱歉，「代客报修」供门店员工为客户登记使用。如需报修，请直接描述故障；"
                      "已有同类工单而这是新问题时，请发送「新问题 故障描述」。")
async def _register(conv: Conversation, inc: Incoming) -> None:
    args = inc.args
    new_problem = len(args) > 1 and args[1] == NEW_PROBLEM
    description = " ".join(args[2:] if new_problem else args[1:])
    if not args or not description:
        raise InvalidInput(FRONT_DESK_USAGE)
    await conv.run(RegisterForCustomer(args[0], description, new_problem=new_problem), inc.person, inc.message)


@text_command("现场签字", "当面签字", roles={Role.TECHNICIAN}, usage="现场签字 [工单号]",
              summary="客户没有聊天账号或在现场时：把签字卡片交给客户当面签字",
              refusal="抱歉，现场签字由工单的技师发起：技师发送「现场签字 工单号」，再把手机交给客户签字。")
async def _in_person(conv: Conversation, inc: Incoming) -> None:
    number = TICKET_NUMBER.search(inc.text)
    await conv.run(OpenInPersonSignoff(number.group(1).upper() if number else None), inc.person, inc.message)
