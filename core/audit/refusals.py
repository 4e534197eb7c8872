"""Refused attempts: the person gets a polite answer and the attempt is audited.

Every refusal by role or ownership is a `NotAllowed` raised where the rule lives (the chat
command registry's roles, a chat module, a core handler, the workflow's roles). The command's
transaction rolls back whole; the conversation's runner (bot/chat/conversation.py) then runs
`RefuseCommand` in a small transaction of its own, so the audit trail shows who tried what,
on which ticket. Nobody records a refusal by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.service import Context, handles

MAX_AUDITED_TEXT = 200


@dataclass(frozen=True, slots=True)
class RefuseCommand:
    command: str  # the command word, e.g. "规则" (a card press: "卡片操作")
    text: str  # what the person sent (clipped in the audit event)
    reply: str  # the polite refusal they get
    ticket_number: str | None = None  # the ticket the attempt was about, when there is one
    card_id: str | None = None  # a card press: the card and the action pressed
    action: str | None = None
    reason: str = ""  # a code from where it was refused, e.g. "not_recipient"


@handles(RefuseCommand)
async def refuse_command(ctx: Context, cmd: RefuseCommand) -> None:
    # Only a ticket that exists gets the event on its trail (a number typed by anyone is not trusted).
    ticket = await ctx.uow.get_ticket(cmd.ticket_number) if cmd.ticket_number else None
    if cmd.card_id is not None:
        await ctx.audit("card_action_refused", {
            "card_id": cmd.card_id,
            "action": cmd.action,
            "role": ctx.actor.role.value,
            "reply": cmd.reply[:MAX_AUDITED_TEXT],
            **({"reason": cmd.reason} if cmd.reason else {}),
        }, ticket)
    else:
        await ctx.audit("command_refused", {
            "command": cmd.command,
            "role": ctx.actor.role.value,
            "text": cmd.text[:MAX_AUDITED_TEXT],
            "reply": cmd.reply[:MAX_AUDITED_TEXT],
            **({"reason": cmd.reason} if cmd.reason else {}),
        }, ticket)
    await ctx.tell(ctx.actor.id, cmd.reply)
