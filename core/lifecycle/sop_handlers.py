"""SOP in the service: the card a technician gets when work starts, and the admins' edits.

The library is one config version (kind "sop"); without one, the shipped defaults apply.
Every edit saves a new version (who, when, what) and an audit event.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.cards import Card, CardKind
from core.errors import InvalidInput, NotFound
from core.lifecycle.sop import Sop, SopLibrary, default_library, edit_step, parse_any, render_steps, to_markdown
from core.model import Role, Ticket
from core.service import Context, handles

SOP_KIND = "sop"
EDITORS = {Role.ADMIN}


@dataclass(frozen=True, slots=True)
class ShowSop:
    key: str | None = None  # "机械类" or "机械类/空调不制冷"; None: the actor's current ticket
    number: str | None = None


@dataclass(frozen=True, slots=True)
class ListSops:
    pass


@dataclass(frozen=True, slots=True)
class ImportSops:
    text: str  # Markdown or YAML
    source: str = "chat"


@dataclass(frozen=True, slots=True)
class EditSop:
    key: str
    op: str  # add, set, delete, remove (the whole SOP)
    index: int | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class ExportSop:
    key: str


async def load_library(ctx: Context) -> tuple[int, SopLibrary]:
    latest = await ctx.uow.latest_config(SOP_KIND)
    if latest is None:
        return 0, default_library()
    return latest[0], SopLibrary.from_dict(latest[1])


async def _save(ctx: Context, based_on: int, library: SopLibrary, note: str, keys: list[str]) -> int:
    version = await ctx.uow.save_config(SOP_KIND, library.to_dict(), actor_id=ctx.actor.id, note=note, at=ctx.now,
                                        based_on=based_on)
    await ctx.audit("sop_changed", {"version": version, "note": note, "keys": keys})
    return version


def sop_card(card_id: str, sop: Sop, ticket: Ticket | None) -> Card:
    facts = [("分类", sop.category), ("故障类型", sop.fault_type or "通用")]
    if ticket is not None:
        facts.insert(0, ("工单", ticket.number))
    return Card(id=card_id, kind=CardKind.SOP, title=f"SOP｜{sop.title}（{len(sop.steps)} 步）",
                ticket_number=ticket.number if ticket else None, facts=tuple(facts), body=render_steps(sop))


async def send_sop_card(ctx: Context, ticket: Ticket, person_id: str) -> Sop | None:
    _version, library = await load_library(ctx)
    keywords = " ".join((ticket.data.get("classification") or {}).get("keywords", []))
    sop = library.find(ticket.category, f"{ticket.description} {keywords}")
    if sop is None:
        await ctx.tell(person_id, f"「{ticket.category or '待分诊'}」暂无 SOP，请按经验作业并多拍照留证。",
                       ticket=ticket)
        return None
    await ctx.send_card(person_id, sop_card(ctx.new_card_id("sop"), sop, ticket))
    await ctx.audit("sop_shown", {"sop": sop.key, "to": person_id}, ticket)
    return sop


@handles(ShowSop)
async def show_sop(ctx: Context, cmd: ShowSop) -> Sop | None:
    if cmd.key:
        _version, library = await load_library(ctx)
        sop = library.get(cmd.key)
        if sop is None:
            raise NotFound(f"没有 SOP「{cmd.key}」。发送「SOP 列表」查看全部。", key=cmd.key)
        await ctx.send_card(ctx.actor.id, sop_card(ctx.new_card_id("sop"), sop, None))
        return sop
    if ctx.actor.role != Role.TECHNICIAN:
        raise InvalidInput("请写明要查看的 SOP，例如「SOP 查看 机械类/空调不制冷」，或发送「SOP 列表」。")
    from core.lifecycle.common import assigned_ticket

    ticket = await assigned_ticket(ctx, cmd.number)
    return await send_sop_card(ctx, ticket, ctx.actor.id)


@handles(ListSops)
async def list_sops(ctx: Context, _cmd: ListSops) -> list[Sop]:
    version, library = await load_library(ctx)
    lines = [f"· {s.key}｜{s.title}（{len(s.steps)} 步）" for s in library.sops]
    origin = f"版本 {version}" if version else "出厂默认"
    await ctx.tell(ctx.actor.id, f"SOP 知识库（{origin}，共 {len(lines)} 条）：\n" + "\n".join(lines))
    return list(library.sops)


@handles(ImportSops)
async def import_sops(ctx: Context, cmd: ImportSops) -> int:
    ctx.require_role(*EDITORS)
    sops = parse_any(cmd.text)
    loaded, library = await load_library(ctx)
    keys = [s.key for s in sops]
    version = await _save(ctx, loaded, library.upsert(sops), f"导入 {len(sops)} 条（{cmd.source}）", keys)
    await ctx.tell(ctx.actor.id, f"已导入 {len(sops)} 条 SOP：{'、'.join(keys)}（版本 {version}）。")
    return version


@handles(EditSop)
async def edit_sop(ctx: Context, cmd: EditSop) -> int:
    ctx.require_role(*EDITORS)
    loaded, library = await load_library(ctx)
    sop = library.get(cmd.key)
    if sop is None:
        raise NotFound(f"没有 SOP「{cmd.key}」。发送「SOP 列表」查看全部。", key=cmd.key)
    if cmd.op == "remove":
        library, what = library.without(cmd.key), "删除整条 SOP"
    else:
        library = library.upsert([edit_step(sop, cmd.op, cmd.index, cmd.text)])
        what = {"add": "添加步骤", "set": "修改步骤", "delete": "删除步骤"}[cmd.op]
        what += f" {cmd.index}" if cmd.index else ""
    version = await _save(ctx, loaded, library, f"{cmd.key}：{what}", [cmd.key])
    await ctx.tell(ctx.actor.id, f"SOP「{cmd.key}」已{what}（版本 {version}）。")
    return version


@handles(ExportSop)
async def export_sop(ctx: Context, cmd: ExportSop) -> str:
    _version, library = await load_library(ctx)
    sop = library.get(cmd.key)
    if sop is None:
        raise NotFound(f"没有 SOP「{cmd.key}」。", key=cmd.key)
    text = to_markdown(sop)
    await ctx.tell(ctx.actor.id, text)
    return text
