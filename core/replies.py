"""Plain replies go through the service too, so they land in the outbox like everything else."""

from __future__ import annotations

from dataclasses import dataclass

from core.service import Context, handles


@dataclass(frozen=True, slots=True)
class Reply:
    text: str


@handles(Reply)
async def reply(ctx: Context, cmd: Reply) -> None:
    await ctx.tell(ctx.actor.id, cmd.text)
