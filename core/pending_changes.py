"""An admin's high-risk change waiting for 确认 / 取消, kept as a config version of its own kind per
admin (rules, organisation): the same lookup for every family of admin commands."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from core.service import Context

PENDING_TTL = timedelta(minutes=15)


def pending_kind(prefix: str, admin_id: str) -> str:
    """`prefix` + 16 hex digits of the admin's id: fits config_versions.kind (32 characters)."""
    return prefix + hashlib.sha256(admin_id.encode()).hexdigest()[:16]


async def pending_change(ctx: Context, prefix: str, ttl: timedelta = PENDING_TTL) -> dict[str, Any] | None:
    """The actor's unconfirmed change of this family, if it is still fresh."""
    kind = pending_kind(prefix, ctx.actor.id)
    rows = await ctx.uow.config_history(kind, limit=1)
    if not rows or ctx.now - datetime.fromisoformat(rows[0]["created_at"]) > ttl:
        return None
    payload = await ctx.uow.config_version(kind, rows[0]["version"])
    return payload if payload and payload.get("state") == "pending" else None
