"""`链接 作废 号 [原因]`: revoke a ticket's tracking link (issue 21, core/tracking/revocation.py).

Supervisors, admins, the front desk and quality staff may revoke any ticket's link; a customer their own.
The old link stops working at once and the customer is sent the new one.
"""

from __future__ import annotations

from bot.chat.conversation import TICKET_NUMBER, Conversation, Incoming, text_command
from core.errors import InvalidInput
from core.tracking.revocation import RevokeTrackingLink

USAGE = ("用法：「链接 作废 工单号 [原因]」，例如「链接 作废 GD-20260101-0001 客户误转发到群里」。"
         "旧链接立即失效，新链接发给客户。")


@text_command("链接", usage="链接 作废 工单号 [原因]", summary="作废工单的进度查看链接（客户会收到新链接）")
async def _tracking_link(conv: Conversation, inc: Incoming) -> None:
    args = list(inc.args)
    if len(args) < 2 or args[0] != "作废" or not TICKET_NUMBER.fullmatch(args[1]):
        raise InvalidInput(f"看不懂这条链接命令。{USAGE}")
    await conv.run(RevokeTrackingLink(args[1].upper(), " ".join(args[2:])), inc.person, inc.message)
