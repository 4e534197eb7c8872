"""The technician directory and the dispatch rules, administered in chat (and by the bulk import).

  * supervisors/admins add, update, deactivate and reactivate technicians and set anyone's duty; a
    deactivated technician's open jobs go back to dispatch (core/dispatch/release.py), as with
    `人员 停用`, the directory sync and the import: one behaviour for everyone who leaves;
    technicians set their own duty (上班/下班);
  * `派单规则` shows the policy; weights and the offer timeout change it as a new version of
    config kind "dispatch" (audited "config_changed"); history and rollback like the SLA matrix;
  * the dry run ranks a ticket's candidates and lists every exclusion without changing anything;
  * `ImportTechnicians` saves the good rows of `ticketbot import technicians FILE`: a new id is
    created, a technician already in the directory is updated (only the columns present in the file
    change), an id that belongs to someone who is not a technician is refused for that row.
Every directory change is audited as `technician_*` with the person ids (core/dispatch/live.py reads
those events to keep the candidate index of every process up to date).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from core.dispatch.engine import DispatchPolicy, DispatchWeights, GeoPoint
from core.dispatch.live import live_index
from core.dispatch.offers import POLICY_KIND, current_policy, excluded_ids, place_of, request_for
from core.dispatch.policy import format_seconds
from core.dispatch.release import release_open_jobs
from core.dispatch.store import DispatchStore, Store, TechnicianEntry
from core.errors import InvalidInput, NotAllowed, NotFound
from core.model import ROLE_LABELS, Role
from core.service import Context, handles

STAFF = (Role.SUPERVISOR, Role.ADMIN)
PLATFORMS = {"wecom": "企业微信", "dingtalk": "钉钉", "feishu": "飞书"}
PERSON_ID = re.compile(r"^[\w.@:\-]{1,64}$")
MAX_NAME = 64
MAX_LOAD_LIMIT = 50
DRY_RUN_SHOWN = 10
WEIGHT_LABELS = {"qualification": "资质匹配", "distance": "距离", "load": "当前负载", "rating": "评分"}


@dataclass(frozen=True, slots=True)
class TechnicianFields:
    """What an add/update/import sets; None leaves a value as it is ("" clears store, supervisor, phone)."""

    name: str | None = None
    phone: str | None = None
    certifications: frozenset[str] | None = None
    skills: frozenset[str] | None = None
    excluded_categories: frozenset[str] | None = None
    store_id: str | None = None
    supervisor_id: str | None = None
    max_load: int | None = None
    on_duty: bool | None = None
    position: tuple[float, float] | None = None  # a known position now (lat, lng)
    identities: tuple[tuple[str, str], ...] = ()  # (platform, external id)

    def given(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                continue
            out[f.name] = sorted(value) if isinstance(value, frozenset) else (
                dict(value) if f.name == "identities" else value)
        return out


@dataclass(frozen=True, slots=True)
class ListTechnicians:
    pass


@dataclass(frozen=True, slots=True)
class ShowTechnician:
    person_id: str


@dataclass(frozen=True, slots=True)
class AddTechnician:
    person_id: str
    fields: TechnicianFields


@dataclass(frozen=True, slots=True)
class UpdateTechnician:
    person_id: str
    fields: TechnicianFields


@dataclass(frozen=True, slots=True)
class SetTechnicianActive:
    person_id: str
    active: bool


@dataclass(frozen=True, slots=True)
class SetDuty:
    on_duty: bool
    person_id: str | None = None  # None: the technician themselves


@dataclass(frozen=True, slots=True)
class ShowDispatchPolicy:
    pass


@dataclass(frozen=True, slots=True)
class SetDispatchWeights:
    weights: tuple[tuple[str, float], ...]  # (qualification|distance|load|rating, value 0..1)


@dataclass(frozen=True, slots=True)
class SetOfferTimeout:
    seconds: float


@dataclass(frozen=True, slots=True)
class ShowDispatchHistory:
    pass


@dataclass(frozen=True, slots=True)
class RollbackDispatchPolicy:
    version: int


@dataclass(frozen=True, slots=True)
class DryRunDispatch:
    number: str


@dataclass(frozen=True, slots=True)
class ImportRow:
    row: int  # the row in the file, for the report
    person_id: str
    fields: TechnicianFields


@dataclass(frozen=True, slots=True)
class ImportTechnicians:
    rows: tuple[ImportRow, ...]


@dataclass(frozen=True, slots=True)
class RowProblem:
    row: int
    column: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass(slots=True)
class ImportOutcome:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    errors: list[RowProblem] = field(default_factory=list)


# --- validation shared by chat commands and the import ---------------------------------------

Problems = list[tuple[str, str]]  # (column label, Chinese message)


async def _merge(ctx: Context, directory: DispatchStore, person_id: str, changes: TechnicianFields,
                 existing: TechnicianEntry | None, stores: dict[str, Store],
                 claimed: dict[tuple[str, str], str] | None = None) -> tuple[TechnicianEntry | None, Problems]:
    """The entry after applying `changes`, or the problems that stop it (nothing is written here)."""
    problems: Problems = []
    if not PERSON_ID.match(person_id):
        problems.append(("工号", f"工号「{person_id}」只能包含字母、数字、中文和 _ - . @ :，最长 64 个字符"))
    if existing is None:
        person = await ctx.uow.get_person(person_id)
        if person is not None:
            who = f"{ROLE_LABELS[person.role]}「{person.name}」"
            problems.append(("工号", f"工号 {person_id} 已被{who}使用，不能作为技师"))
    name = changes.name.strip() if changes.name is not None else (existing.name if existing else "")
    if not name:
        problems.append(("姓名", "姓名不能为空"))
    elif len(name) > MAX_NAME:
        problems.append(("姓名", f"姓名太长（最多 {MAX_NAME} 个字）"))
    store_id = existing.store_id if existing else None
    store_position = existing.store_position if existing else None
    if changes.store_id is not None:
        store_id = changes.store_id.strip() or None
        store = stores.get(store_id) if store_id else None
        if store_id and store is None:
            problems.append(("门店", f"门店「{store_id}」不存在（现有门店：{'、'.join(stores) or '无'}）"))
        store_position = store.position if store else None
    supervisor_id = existing.supervisor_id if existing else None
    if changes.supervisor_id is not None:
        supervisor_id = changes.supervisor_id.strip() or None
        boss = await ctx.uow.get_person(supervisor_id) if supervisor_id else None
        if supervisor_id and (boss is None or boss.role not in STAFF):
            problems.append(("主管", f"主管「{supervisor_id}」不存在或不是主管"))
    max_load = changes.max_load if changes.max_load is not None else (existing.max_load if existing else 5)
    if not 1 <= max_load <= MAX_LOAD_LIMIT:
        problems.append(("最大负载", f"最大负载必须在 1~{MAX_LOAD_LIMIT} 之间：{max_load}"))
    position, position_at = None, None
    if changes.position is not None:
        try:
            position, position_at = GeoPoint(*changes.position), ctx.now
        except InvalidInput as error:
            problems.append(("纬度", error.user_message))
    for platform, external in changes.identities:
        label = PLATFORMS.get(platform)
        if label is None:
            problems.append((platform, f"未知的平台：{platform}"))
            continue
        owner = await ctx.uow.person_by_identity(platform, external)
        first = (claimed or {}).get((platform, external))
        if (owner is not None and owner.id != person_id) or (first is not None and first != person_id):
            problems.append((label, f"{label}账号 {external} 已属于 {owner.id if owner else first}"))
    if problems:
        return None, problems
    base = existing or TechnicianEntry(person_id=person_id, name=name)
    phone = base.phone if changes.phone is None else (changes.phone.strip() or None)
    entry = replace(
        base, name=name, phone=phone, store_id=store_id, store_position=store_position, supervisor_id=supervisor_id,
        certifications=base.certifications if changes.certifications is None else changes.certifications,
        skills=base.skills if changes.skills is None else changes.skills,
        excluded_categories=(base.excluded_categories if changes.excluded_categories is None
                             else changes.excluded_categories),
        on_duty=base.on_duty if changes.on_duty is None else changes.on_duty,
        max_load=max_load,
        last_position=position, last_position_at=position_at,  # only written when set
        identities={},
    )
    return entry, problems


async def _existing(directory: DispatchStore, person_id: str) -> TechnicianEntry | None:
    found = await directory.entries([person_id], identities=True)
    return found[0] if found else None


async def _require_technician(directory: DispatchStore, person_id: str) -> TechnicianEntry:
    entry = await _existing(directory, person_id)
    if entry is None:
        raise NotFound(f"没有工号为「{person_id}」的技师。发送「技师」查看名单；"
                       "其他角色（主管、仓库、质检等）请用「人员 查看/修改 工号」。", person_id=person_id)
    return entry


def _raise(problems: Problems) -> None:
    raise InvalidInput("；".join(message for _, message in problems) + "。", problems=problems)


# --- directory commands ----------------------------------------------------------------------

@handles(AddTechnician)
async def add_technician(ctx: Context, cmd: AddTechnician) -> TechnicianEntry:
    ctx.require_role(*STAFF)
    directory = ctx.uow.dispatch_store()
    if await _existing(directory, cmd.person_id) is not None:
        raise InvalidInput(f"技师 {cmd.person_id} 已存在，修改请用「技师 修改 {cmd.person_id} 字段=值」。",
                           person_id=cmd.person_id)
    entry, problems = await _merge(ctx, directory, cmd.person_id, cmd.fields, None, await directory.stores())
    if entry is None:
        _raise(problems)
    assert entry is not None
    # The local identity makes the new person usable in the playground at once.
    await directory.save_technician(entry, identities={"local": cmd.person_id, **dict(cmd.fields.identities)},
                                    at=ctx.now)
    await ctx.audit("technician_added", {"person_id": cmd.person_id, "fields": cmd.fields.given()})
    await ctx.tell(ctx.actor.id, f"已添加技师 {entry.name}（{entry.person_id}）。\n" + _describe(entry, None))
    return entry


@handles(UpdateTechnician)
async def update_technician(ctx: Context, cmd: UpdateTechnician) -> TechnicianEntry:
    ctx.require_role(*STAFF)
    directory = ctx.uow.dispatch_store()
    existing = await _require_technician(directory, cmd.person_id)
    if not cmd.fields.given():
        raise InvalidInput("请写明要修改的字段，例如：技师 修改 tech-x 资质=OBD认证 门店=S01。")
    entry, problems = await _merge(ctx, directory, cmd.person_id, cmd.fields, existing, await directory.stores())
    if entry is None:
        _raise(problems)
    assert entry is not None
    await directory.save_technician(entry, identities=dict(cmd.fields.identities), at=ctx.now)
    await ctx.audit("technician_updated", {"person_id": cmd.person_id, "fields": cmd.fields.given()})
    await ctx.tell(ctx.actor.id, f"已更新技师 {entry.name}（{entry.person_id}）。")
    return entry


@handles(SetTechnicianActive)
async def set_technician_active(ctx: Context, cmd: SetTechnicianActive) -> None:
    ctx.require_role(*STAFF)
    directory = ctx.uow.dispatch_store()
    entry = await _require_technician(directory, cmd.person_id)
    if entry.active == cmd.active:
        raise InvalidInput(f"技师 {entry.name}（{entry.person_id}）已经是{'启用' if cmd.active else '停用'}状态。")
    jobs = "" if cmd.active else await _release_jobs(ctx, cmd.person_id)
    await directory.set_active(cmd.person_id, cmd.active)
    await ctx.audit("technician_activated" if cmd.active else "technician_deactivated", {"person_id": cmd.person_id})
    verb = "启用，可以接单了" if cmd.active else "停用，不会再收到派单"
    await ctx.tell(ctx.actor.id, f"技师 {entry.name}（{entry.person_id}）已{verb}。{jobs}")


async def _release_jobs(ctx: Context, person_id: str) -> str:
    """A deactivated technician's open jobs go back to dispatch, as for `人员 停用`, the directory sync
    and the import (issue 20: people who left); returns the sentence that says what happened to them.
    Called before the person row is written: the tickets are locked first (core/timers.py)."""
    person = await ctx.uow.get_person(person_id)
    if person is None:
        return ""
    handled = await release_open_jobs(ctx, replace(person, active=False))
    if not handled:
        return "手上没有未结工单。"
    # release_open_jobs leaves a job on the person only when it needs no technician now (or nobody
    # else is eligible): those are the supervisors' to 转派.
    stay = [n for n in handled if (await ctx.ticket(n)).assignee_id == person_id]
    moved = [n for n in handled if n not in stay]
    parts = [f"{'、'.join(moved)} 已改派或回到待派单"] if moved else []
    if stay:
        parts.append(f"{'、'.join(stay)} 暂时无法改派（如等待备件、待客户确认），已通知主管转派")
    return f"手上的 {len(handled)} 张未结工单已退回派单：" + "；".join(parts) + "。"


@handles(SetDuty)
async def set_duty(ctx: Context, cmd: SetDuty) -> None:
    directory = ctx.uow.dispatch_store()
    person_id = cmd.person_id or ctx.actor.id
    if cmd.person_id is None:
        if ctx.actor.role is not Role.TECHNICIAN:
            raise NotAllowed("只有技师可以用「上班/下班」设置自己的在岗状态。")
    elif person_id != ctx.actor.id:
        ctx.require_role(*STAFF)
    entry = await _require_technician(directory, person_id)
    word = "在岗" if cmd.on_duty else "离岗"
    if entry.on_duty == cmd.on_duty:
        raise InvalidInput(f"{'您' if person_id == ctx.actor.id else entry.name}已经是{word}状态了。")
    await directory.set_on_duty(person_id, cmd.on_duty)
    await ctx.audit("technician_duty_changed", {"person_id": person_id, "on_duty": cmd.on_duty})
    if person_id == ctx.actor.id:
        after = "系统会按派单规则给您派单。" if cmd.on_duty else "不会再给您派新单，手上的工单请继续处理。"
        await ctx.tell(ctx.actor.id, f"已设为{word}，{after}")
    else:
        await ctx.tell(ctx.actor.id, f"已将技师 {entry.name}（{entry.person_id}）设为{word}。")
        await ctx.tell(person_id, f"{ctx.actor.name} 已将您设为{word}。")


@handles(ListTechnicians)
async def list_technicians(ctx: Context, _cmd: ListTechnicians) -> list[TechnicianEntry]:
    ctx.require_role(*STAFF)
    directory = ctx.uow.dispatch_store()
    entries = sorted(await directory.entries(), key=lambda e: (not e.active, e.person_id))
    if not entries:
        await ctx.tell(ctx.actor.id, "技师名单是空的。添加：技师 添加 工号 姓名 资质=… 技能=… 门店=…")
        return []
    profiles = await live_index(ctx.service).everyone(directory, ctx.now)
    lines = []
    for entry in entries[:50]:
        profile = profiles.get(entry.person_id)
        load = f"{profile.open_load}/{entry.max_load}" if profile else f"?/{entry.max_load}"
        state = "停用" if not entry.active else ("在岗" if entry.on_duty else "离岗")
        certs = "、".join(sorted(entry.certifications)) or "无"
        skills = "、".join(sorted(entry.skills)) or "无"
        lines.append(f"{entry.person_id} {entry.name}｜{state}｜在办 {load}｜资质 {certs}｜技能 {skills}"
                     f"｜门店 {entry.store_id or '—'}")
    more = f"\n（共 {len(entries)} 位，仅显示前 50 位）" if len(entries) > 50 else ""
    await ctx.tell(ctx.actor.id, f"技师名单（{len(entries)} 位）：\n" + "\n".join(lines) + more)
    return entries


@handles(ShowTechnician)
async def show_technician(ctx: Context, cmd: ShowTechnician) -> TechnicianEntry:
    ctx.require_role(*STAFF)
    directory = ctx.uow.dispatch_store()
    entry = await _require_technician(directory, cmd.person_id)
    profile = await live_index(ctx.service).profile(directory, cmd.person_id, ctx.now)
    text = _describe(entry, profile)
    if entry.last_position_at is not None:
        minutes = (ctx.now - entry.last_position_at).total_seconds() / 60
        text += f"\n最近位置：{minutes:.0f} 分钟前"
    await ctx.tell(ctx.actor.id, f"技师 {entry.name}（{entry.person_id}）\n{text}")
    return entry


def _describe(entry: TechnicianEntry, profile: Any) -> str:
    lines = [
        f"状态：{'停用' if not entry.active else ('在岗' if entry.on_duty else '离岗')}",
        f"资质：{'、'.join(sorted(entry.certifications)) or '无'}",
        f"技能：{'、'.join(sorted(entry.skills)) or '无'}",
        f"不接：{'、'.join(sorted(entry.excluded_categories)) or '无'}",
        f"门店：{entry.store_id or '—'}；主管：{entry.supervisor_id or '—'}；电话：{entry.phone or '—'}",
        f"最大负载：{entry.max_load}",
    ]
    if profile is not None:
        rating = f"{entry.rating:.1f}（{entry.rating_count} 次）" if entry.rating is not None else "暂无"
        lines.append(f"在办：{profile.open_load}；近3日接单：{profile.accepted_last_3_days}；评分：{rating}")
    if entry.identities:
        lines.append("账号：" + "；".join(f"{PLATFORMS.get(p, p)} {x}" for p, x in sorted(entry.identities.items())))
    return "\n".join(lines)


# --- the dispatch rules ----------------------------------------------------------------------

def policy_text(version: int, policy: DispatchPolicy) -> str:
    origin = "出厂默认" if version == 0 else f"版本 v{version}"
    return (f"{policy.describe()}\n（{origin}）\n"
            "修改权重：派单规则 权重 资质=0.4 距离=0.3 负载=0.2 评分=0.1｜接单时限：派单规则 超时 15分钟｜"
            "派单规则 历史｜派单规则 回滚 版本号｜试算：测试派单 工单号")


@handles(ShowDispatchPolicy)
async def show_dispatch_policy(ctx: Context, _cmd: ShowDispatchPolicy) -> DispatchPolicy:
    ctx.require_role(*STAFF)
    version, policy = await current_policy(ctx)
    await ctx.tell(ctx.actor.id, policy_text(version, policy))
    return policy


async def _save_policy(ctx: Context, before: tuple[int, DispatchPolicy], after: DispatchPolicy, note: str,
                       change: dict[str, Any]) -> int:
    version, policy = before
    if after == policy:
        raise InvalidInput("派单规则没有变化。")
    new_version = await ctx.uow.save_config(POLICY_KIND, after.to_dict(), actor_id=ctx.actor.id, note=note,
                                            at=ctx.now, based_on=version)
    await ctx.audit("config_changed", {"kind": POLICY_KIND, "version": new_version, "previous_version": version,
                                       "note": note, **change})
    await ctx.tell(ctx.actor.id, f"派单规则已更新为 v{new_version}（{note}），之后的派单按新规则计算。\n"
                                 + policy_text(new_version, after))
    return new_version


@handles(SetDispatchWeights)
async def set_dispatch_weights(ctx: Context, cmd: SetDispatchWeights) -> int:
    ctx.require_role(*STAFF)
    if not cmd.weights:
        raise InvalidInput("请写明权重，例如：派单规则 权重 资质=0.5 距离=0.2 负载=0.2 评分=0.1")
    before = await current_policy(ctx)
    merged = before[1].weights.to_dict()
    for key, value in cmd.weights:
        if key not in merged:
            raise InvalidInput(f"未知的权重项：{key}（可用：资质、距离、负载、评分）", key=key)
        merged[key] = value
    weights = DispatchWeights(**merged)  # validates: non-negative, sum 1
    after = replace(before[1], weights=weights)
    note = "权重 " + " ".join(f"{WEIGHT_LABELS[k]}={v:.0%}" for k, v in weights.to_dict().items())
    return await _save_policy(ctx, before, after, note, {"weights": {"from": before[1].weights.to_dict(),
                                                                     "to": weights.to_dict()}})


@handles(SetOfferTimeout)
async def set_offer_timeout(ctx: Context, cmd: SetOfferTimeout) -> int:
    ctx.require_role(*STAFF)
    before = await current_policy(ctx)
    after = replace(before[1], offer_timeout_s=cmd.seconds)  # validated by the policy
    return await _save_policy(ctx, before, after, f"接单时限 {format_seconds(cmd.seconds)}",
                              {"offer_timeout_s": {"from": before[1].offer_timeout_s, "to": cmd.seconds}})


@handles(ShowDispatchHistory)
async def show_dispatch_history(ctx: Context, _cmd: ShowDispatchHistory) -> list[dict[str, Any]]:
    ctx.require_role(*STAFF)
    history = await ctx.uow.config_history(POLICY_KIND)
    if not history:
        await ctx.tell(ctx.actor.id, "派单规则还没有修改过（使用出厂默认）。")
        return []
    lines = [f"v{h['version']}｜{h['created_at'][:16]}｜{h['actor_id']}｜{h['note']}" for h in history]
    await ctx.tell(ctx.actor.id, "派单规则历史（新→旧）：\n" + "\n".join(lines)
                   + "\n回滚：派单规则 回滚 版本号（0 = 出厂默认）")
    return history


@handles(RollbackDispatchPolicy)
async def rollback_dispatch_policy(ctx: Context, cmd: RollbackDispatchPolicy) -> int:
    ctx.require_role(*STAFF)
    before = await current_policy(ctx)
    if cmd.version == 0:
        target = DispatchPolicy()
    else:
        stored = await ctx.uow.config_version(POLICY_KIND, cmd.version)
        if stored is None:
            raise NotFound(f"没有派单规则版本 v{cmd.version}。发送「派单规则 历史」查看。", version=cmd.version)
        target = DispatchPolicy.from_dict(stored)
    return await _save_policy(ctx, before, target, f"回滚到 v{cmd.version}", {"rollback_to": cmd.version})


# --- dry run ---------------------------------------------------------------------------------

@handles(DryRunDispatch)
async def dry_run_dispatch(ctx: Context, cmd: DryRunDispatch) -> str:
    ctx.require_role(*STAFF)
    ticket = await ctx.ticket(cmd.number, lock=False)
    if not ticket.category:
        raise InvalidInput(f"工单 {ticket.number} 还没有分类，先分诊再试算。", number=ticket.number)
    directory = ctx.uow.dispatch_store()
    place = await place_of(ctx, ticket, directory)
    request = request_for(ticket, place)
    version, policy, ranked, exclusions = await live_index(ctx.service).explain(
        directory, request, lambda: current_policy(ctx), ctx.now, limit=None)
    site = {"site": "现场位置", "store": "客户门店", "unknown": "无地点（距离不计分）"}
    source = ranked[0].site_source.value if ranked else ("site" if place.site else "store" if place.store else
                                                          "unknown")
    lines = [f"派单试算：{ticket.number}（{ticket.category}，{ticket.status.label}）",
             f"地点：{place.text}｜距离按{site[source]}",
             f"规则：{'出厂默认' if version == 0 else f'v{version}'}，"
             + "，".join(f"{WEIGHT_LABELS[k]} {v:.0%}" for k, v in policy.weights.to_dict().items())]
    if excluded_ids(ticket):
        lines.append(f"本单已拒单/超时：{'、'.join(excluded_ids(ticket))}")
    if ranked:
        lines.append(f"候选（{len(ranked)} 位，按得分）：")
        for c in ranked[:DRY_RUN_SHOWN]:
            parts = "｜".join(f"{comp.label} {comp.normalised:.2f}" for comp in c.components)
            distance = f"，{c.distance_km:.1f} 公里" if c.distance_km is not None else ""
            lines.append(f"{c.rank}. {c.name}（{c.person_id}）{c.score:.3f}：{parts}{distance}")
        if len(ranked) > DRY_RUN_SHOWN:
            lines.append(f"……其余 {len(ranked) - DRY_RUN_SHOWN} 位略")
    else:
        lines.append("没有符合条件的候选技师：派单会转主管人工处理。")
    if exclusions:
        lines.append(f"排除（{len(exclusions)} 位）：")
        for e in exclusions[:20]:
            lines.append(f"· {e.name}（{e.person_id}）：{'；'.join(r.message for r in e.reasons)}")
        if len(exclusions) > 20:
            lines.append(f"……其余 {len(exclusions) - 20} 位略")
    lines.append("（试算不会改变工单和派单）")
    text = "\n".join(lines)
    await ctx.tell(ctx.actor.id, text)
    return text


# --- bulk import -----------------------------------------------------------------------------

@handles(ImportTechnicians)
async def import_technicians(ctx: Context, cmd: ImportTechnicians) -> ImportOutcome:
    ctx.require_role(Role.ADMIN)
    directory = ctx.uow.dispatch_store()
    stores = await directory.stores()
    outcome = ImportOutcome()
    claimed: dict[tuple[str, str], str] = {}
    for row in cmd.rows:
        existing = await _existing(directory, row.person_id)
        entry, problems = await _merge(ctx, directory, row.person_id, row.fields, existing, stores, claimed)
        if entry is None:
            outcome.errors += [RowProblem(row.row, column, message) for column, message in problems]
            continue
        identities = dict(row.fields.identities)
        claimed.update({key: row.person_id for key in row.fields.identities})
        if existing is None:
            identities = {"local": row.person_id, **identities}
        created = await directory.save_technician(entry, identities=identities, at=ctx.now)
        (outcome.created if created else outcome.updated).append(row.person_id)
    if outcome.created or outcome.updated:
        await ctx.audit("technicians_imported", {"person_ids": outcome.created + outcome.updated,
                                                 "created": outcome.created, "updated": outcome.updated,
                                                 "rejected_rows": sorted({e.row for e in outcome.errors})})
    return outcome
