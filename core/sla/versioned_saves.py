"""Commands the console's admin pages need and the chat has no word for: saving the whole SLA matrix at
once, and rolling back the holiday overrides and the SOP library (bot/console/admin_*.py).

Core commands like the chat's (run by `TicketService.handle` in one transaction with the admin as
actor) that write the same versioned configuration (`config_versions` kinds "sla", "calendar", "sop")
with the same audit kinds as the chat's commands for those kinds: "config_changed" and "sop_changed".
The chat edits one SLA cell per command (`SLA 设置`), which is one version per cell; the page's table
saves every changed cell as one version, so that one rollback undoes one save.

`based_on` is the version the admin previewed: when someone saved in between, the command refuses
(Conflict) instead of overwriting what the admin never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import Conflict, InvalidInput, NotFound
from core.lifecycle.sop import SopLibrary, default_library
from core.lifecycle.sop_handlers import SOP_KIND, load_library
from core.model import Role
from core.service import Context, handles
from core.sla.admin import cell_text
from core.sla.matrix import SlaMatrix
from core.sla.stored_config import CALENDAR_KIND, SLA_KIND, CalendarConfig, load_calendar_config, load_matrix

STALE = ("配置在您预览之后被其他管理员修改过（当前版本 {current}，您预览的是版本 {based_on}），"
         "这次没有保存。请刷新后重试。")
NOTE_LIMIT = 200


@dataclass(frozen=True, slots=True)
class SaveSlaMatrix:
    """The whole matrix as `SlaMatrix.to_dict()`; only cells that differ from the current ones count."""

    payload: dict[str, Any]
    based_on: int


@dataclass(frozen=True, slots=True)
class RollbackCalendar:
    version: int  # 0: no overrides at all (the package's schedule only)
    based_on: int


@dataclass(frozen=True, slots=True)
class RollbackSops:
    version: int  # 0: the shipped library
    based_on: int


def _check_base(current: int, based_on: int) -> None:
    if current != based_on:
        raise Conflict(STALE.format(current=current, based_on=based_on), current=current, based_on=based_on)


def changed_cells(before: SlaMatrix, after: SlaMatrix) -> list[dict[str, Any]]:
    """Per changed cell: its label and both values (the audit payload and the preview's table)."""
    out = []
    for old in before:
        new = after.cell(old.priority, old.impact, old.band)
        if new != old:
            out.append({"cell": old.label, "before": old.to_dict(), "after": new.to_dict(),
                        "text": f"{old.label}：{cell_text(old)} → {cell_text(new)}"})
    return out


@handles(SaveSlaMatrix)
async def save_sla_matrix(ctx: Context, cmd: SaveSlaMatrix) -> int:
    ctx.require_role(Role.ADMIN)
    version, matrix = await load_matrix(ctx.uow)
    _check_base(version, cmd.based_on)
    proposed = SlaMatrix.from_dict(cmd.payload)  # validates every cell (SlaConfigError names it)
    cells = changed_cells(matrix, proposed)
    if not cells:
        raise InvalidInput("SLA 矩阵没有变化，未生成新版本。", field="matrix")
    note = f"修改 {len(cells)} 个单元格：" + "；".join(c["text"] for c in cells)
    if len(note) > NOTE_LIMIT:
        note = note[:NOTE_LIMIT - 1] + "…"
    new_version = await ctx.uow.save_config(SLA_KIND, proposed.to_dict(), actor_id=ctx.actor.id, note=note,
                                            at=ctx.now, based_on=version)
    await ctx.audit("config_changed", {"kind": SLA_KIND, "version": new_version, "previous_version": version,
                                       "cells": [{k: c[k] for k in ("cell", "before", "after")} for c in cells],
                                       "source": "console"})
    await ctx.tell(ctx.actor.id, f"已在管理后台更新 SLA 矩阵 {len(cells)} 个单元格（版本 {new_version}，"
                                 "对之后新报修的工单生效）。")
    return new_version


@handles(RollbackCalendar)
async def rollback_calendar(ctx: Context, cmd: RollbackCalendar) -> int:
    ctx.require_role(Role.ADMIN)
    version, _config = await load_calendar_config(ctx.uow)
    _check_base(version, cmd.based_on)
    if cmd.version == version:
        raise InvalidInput(f"当前已经是版本 {version}，无需回滚。", field="version")
    if cmd.version == 0:
        target = CalendarConfig()
    else:
        payload = await ctx.uow.config_version(CALENDAR_KIND, cmd.version)
        if payload is None:
            raise NotFound(f"没有节假日配置版本 {cmd.version}。", field="version", version=cmd.version)
        target = CalendarConfig.from_dict(payload)
    note = f"回滚到版本 {cmd.version}"
    new_version = await ctx.uow.save_config(CALENDAR_KIND, target.to_dict(), actor_id=ctx.actor.id, note=note,
                                            at=ctx.now, based_on=version)
    await ctx.audit("config_changed", {"kind": CALENDAR_KIND, "version": new_version, "previous_version": version,
                                       "change": note, "rollback_to": cmd.version})
    await ctx.tell(ctx.actor.id, f"已将节假日覆盖回滚到版本 {cmd.version} 的内容（新版本 {new_version}）。")
    return new_version


@handles(RollbackSops)
async def rollback_sops(ctx: Context, cmd: RollbackSops) -> int:
    ctx.require_role(Role.ADMIN)
    version, library = await load_library(ctx)
    _check_base(version, cmd.based_on)
    if cmd.version == version:
        raise InvalidInput(f"当前已经是版本 {version}，无需回滚。", field="version")
    if cmd.version == 0:
        target = default_library()
    else:
        payload = await ctx.uow.config_version(SOP_KIND, cmd.version)
        if payload is None:
            raise NotFound(f"没有 SOP 版本 {cmd.version}。", field="version", version=cmd.version)
        target = SopLibrary.from_dict(payload)
    before = {s.key: s for s in library.sops}
    after = {s.key: s for s in target.sops}
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    note = f"回滚到版本 {cmd.version}"
    new_version = await ctx.uow.save_config(SOP_KIND, target.to_dict(), actor_id=ctx.actor.id, note=note,
                                            at=ctx.now, based_on=version)
    await ctx.audit("sop_changed", {"version": new_version, "note": note, "keys": keys, "rollback_to": cmd.version})
    await ctx.tell(ctx.actor.id, f"已将 SOP 知识库回滚到版本 {cmd.version} 的内容（新版本 {new_version}）。")
    return new_version
