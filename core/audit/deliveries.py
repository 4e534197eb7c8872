"""What a delivery channel did with a notice about a ticket, in the ticket's trail.

Channels whose messages cost money or budget (SMS, 微信客服) record each outcome: sent (with the
provider's message id), folded (nothing sent: the person was already told that status), failed
(the provider refused for good), or, for 微信客服, a budget spent and a held message released. The
channel's sender runs `RecordDelivery` as the system after the provider answered; the core knows the
outcome and its details, never the platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidInput, NotAllowed
from core.service import Context, handles

# budget_spent / held_released: 微信客服's 5-in-48-h budget (moved to SMS or held until the customer writes).
OUTCOMES = frozenset({"sent", "folded", "failed", "deferred", "budget_spent", "held_released"})


@dataclass(frozen=True, slots=True)
class RecordDelivery:
    ticket_number: str
    channel: str  # e.g. "sms": the audit event is "<channel>_<outcome>"
    outcome: str  # one of OUTCOMES
    details: dict[str, Any] = field(default_factory=dict)  # masked recipient, template, message id …


@handles(RecordDelivery)
async def record_delivery(ctx: Context, cmd: RecordDelivery) -> None:
    if not ctx.is_system:
        raise NotAllowed("只有系统可以记录消息投递结果。", actor=ctx.actor.id)
    if cmd.outcome not in OUTCOMES or not cmd.channel.isidentifier():
        raise InvalidInput(f"未知的投递结果：{cmd.channel} {cmd.outcome}", outcome=cmd.outcome)
    ticket = await ctx.ticket(cmd.ticket_number, lock=False)
    await ctx.audit(f"{cmd.channel}_{cmd.outcome}", dict(cmd.details), ticket)
