"""Refused attempts at privileged commands: the person gets a polite answer and the attempt is audited.

Chat commands for admins or supervisors (规则, 分诊 ...) check the role themselves and, when it
does not fit, run `RefuseCommand` instead of failing silently, so the audit trail shows who
tried what.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.service import Context, handles

MAX_AUDITED_TEXT = 200


@dataclass(frozen=True, slots=True)
class RefuseCommand:
    command: str  # the command word, e.g. "规则"
    text: str  # what the person sent (clipped in the audit event)
    reply: str  # the polite refusal they get


@handles(RefuseCommand)
async def refuse_command(ctx: Context, cmd: RefuseCommand) -> None:
    await ctx.audit("command_refused", {
        "command": cmd.command,
        "role": ctx.actor.role.value,
        "text": cmd.text[:MAX_AUDITED_TEXT],
    })
    await ctx.tell(ctx.actor.id, cmd.reply)
