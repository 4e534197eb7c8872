"""Safe changes to the workflow template (seed 2's CT-tube lesson).

* Every change is a new config version (kind "workflow") plus an audit event; 模板 历史 lists
  them and 模板 回滚 goes back.
* A change that makes a required step optional (fewer completion photos, check-in without a
  photo or location, QC switched off, a guard or a step removed, more people allowed to close)
  is high-risk: it waits as a draft until the same admin replies 确认 (15 minutes).
* A dry run applies the draft (or the current template) to a sample ticket and shows the
  path to 已结案 with what each step would still need — without changing anything.
* 重开未签字工单 reopens every closed ticket that lacks a customer signature, after 确认.

Drafts are config versions too (kind "pending_confirm"), so a confirmation survives a restart
and works whichever process receives it.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from core.errors import InvalidInput, NotFound
from core.lifecycle.common import WORKFLOW_KIND, install_workflow, section, sync_workflow
from core.lifecycle.photos import WORK, distinct_photos
from core.lifecycle.signoff import is_signed
from core.model import ROLE_LABELS, Role, Ticket, TicketStatus
from core.service import _GUARDS, Context, handles
from core.workflow import DEFAULT_OPTIONS, Transition, Workflow, option, repair_service_workflow, with_qc

S = TicketStatus
DRAFT_KIND = "pending_confirm"
DRAFT_TTL = timedelta(minutes=15)
# Chinese option names admins type → (option key, unit factor, kind).
OPTION_ALIASES: dict[str, tuple[str, float, str]] = {
    "完工照片": ("completion_photos", 1, "int"),
    "签到照片": ("checkin_requires_photo", 1, "bool"),
    "签到定位": ("checkin_requires_location", 1, "bool"),
    "签到时限": ("checkin_window_s", 60, "int"),  # minutes
    "备件升级": ("parts_escalation_h", 1, "float"),  # hours
    "签字回访": ("signoff_callback_s", 1, "int"),  # seconds
    "返修期": ("rework_window_days", 1, "int"),  # days
    "质检": ("qc_required", 1, "bool"),
}
OPTION_LABELS = {key: name for name, (key, _f, _k) in OPTION_ALIASES.items()}
_BOOL = {"开": True, "开启": True, "是": True, "on": True, "true": True, "1": True, "必填": True,
         "关": False, "关闭": False, "否": False, "off": False, "false": False, "0": False, "可选": False}
_LIMITS = {"completion_photos": (0, 20), "checkin_window_s": (60, 86400), "parts_escalation_h": (1, 720),
           "signoff_callback_s": (10, 86400), "rework_window_days": (1, 365)}


def builtin_templates() -> dict[str, Workflow]:
    repair = repair_service_workflow()
    return {"维修服务": repair, "生产工序": replace(with_qc(repair, True), name="生产工序")}


# --- pure: changes, validation, risk, dry run -----------------------------------------------

def set_option(workflow: Workflow, alias: str, raw: str) -> Workflow:
    if alias not in OPTION_ALIASES:
        raise InvalidInput(f"没有「{alias}」这个设置。可用：{'、'.join(OPTION_ALIASES)}。")
    key, factor, kind = OPTION_ALIASES[alias]
    text = raw.strip().lower()
    if kind == "bool":
        if text not in _BOOL:
            raise InvalidInput(f"「{alias}」请填 开 或 关。")
        value: Any = _BOOL[text]
        return with_qc(workflow, value) if key == "qc_required" else replace(
            workflow, options={**workflow.options, key: value})
    try:
        number = float(text)
    except ValueError as error:
        raise InvalidInput(f"「{alias}」请填数字。") from error
    value = int(number * factor) if kind == "int" else number * factor
    low, high = _LIMITS[key]
    if not low <= value <= high:
        raise InvalidInput(f"「{alias}」超出范围（{low / factor:g}–{high / factor:g}）。")
    return replace(workflow, options={**workflow.options, key: value})


def change_guard(workflow: Workflow, step: str, guard: str, *, add: bool) -> Workflow:
    t = workflow.transition(step)
    if add and guard not in _GUARDS:
        raise InvalidInput(f"没有名为「{guard}」的检查项。可用：{'、'.join(sorted(_GUARDS))}。")
    if not add and guard not in t.guards:
        raise InvalidInput(f"「{t.label}」没有「{guard}」这项检查。")
    guards = tuple(dict.fromkeys((*t.guards, guard))) if add else tuple(g for g in t.guards if g != guard)
    return _with_transition(workflow, replace(t, guards=guards))


def _with_transition(workflow: Workflow, new: Transition) -> Workflow:
    return replace(workflow, transitions=tuple(new if t.name == new.name else t for t in workflow.transitions))


def validate(workflow: Workflow) -> Workflow:
    if not workflow.name or not workflow.transitions:
        raise InvalidInput("模板需要名称和至少一个步骤。")
    names = [t.name for t in workflow.transitions]
    if len(set(names)) != len(names):
        raise InvalidInput("模板里有重名的步骤。")
    unknown = sorted({g for t in workflow.transitions for g in t.guards} - set(_GUARDS))
    if unknown:
        raise InvalidInput(f"未知的检查项：{'、'.join(unknown)}。可用：{'、'.join(sorted(_GUARDS))}。")
    if not any(t.target == S.CLOSED for t in workflow.transitions):
        raise InvalidInput("模板必须有一个进入「已结案」的步骤（客户签字）。")
    for key, value in workflow.options.items():
        default = DEFAULT_OPTIONS.get(key)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (isinstance(default, bool) and not isinstance(value, bool)) or (
                default is not None and not isinstance(default, bool) and not numeric):
            raise InvalidInput(f"设置 {OPTION_LABELS.get(key, key)} 的类型不对：{value!r}")
    return workflow


def parse_template_json(text: str) -> Workflow:
    try:
        return validate(Workflow.from_dict(json.loads(text)))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise InvalidInput(f"模板 JSON 无法解析：{str(error)[:120]}") from error


def _roles(roles: frozenset[Role]) -> str:
    return "、".join(ROLE_LABELS[r] for r in sorted(roles)) or "系统"


def risks(old: Workflow, new: Workflow) -> list[str]:
    """High-risk differences: anything that makes a required step optional or widens who may close."""
    found: list[str] = []
    before, after = option(old, "completion_photos"), option(new, "completion_photos")
    if after < before:
        found.append(f"完工照片从 {before} 张减为 {after} 张" + ("（取消必填）" if after == 0 else ""))
    for key, label in (("checkin_requires_photo", "签到照片"), ("checkin_requires_location", "签到定位"),
                       ("qc_required", "质检")):
        if option(old, key) and not option(new, key):
            found.append(f"{label}由必需改为可选")
    new_steps = {t.name: t for t in new.transitions}
    for t in old.transitions:
        n = new_steps.get(t.name)
        if n is None:
            found.append(f"删除了步骤「{t.label}」")
            continue
        for g in t.guards:
            if g not in n.guards:
                found.append(f"「{t.label}」去掉了检查「{g}」")
        if n.target == S.CLOSED and n.roles - t.roles:
            found.append(f"「{n.label}」新增允许 {_roles(n.roles - t.roles)} 结案")
    old_names = {t.name for t in old.transitions}
    for n in new.transitions:
        if n.name not in old_names and n.target == S.CLOSED:
            found.append(f"新增了进入「已结案」的步骤「{n.label}」（{_roles(n.roles)}）")
        elif n.name in old_names and n.target == S.CLOSED and old.transition(n.name).target != S.CLOSED:
            found.append(f"「{n.label}」改为直接进入「已结案」")
    return found


def diff(old: Workflow, new: Workflow) -> list[str]:
    lines = []
    for key in sorted(set(old.options) | set(new.options) | set(DEFAULT_OPTIONS)):
        a = option(old, key) if key in DEFAULT_OPTIONS else old.options.get(key)
        b = option(new, key) if key in DEFAULT_OPTIONS else new.options.get(key)
        if a != b:
            lines.append(f"{OPTION_LABELS.get(key, key)}：{a} → {b}")
    old_steps = {t.name: t for t in old.transitions}
    for t in new.transitions:
        o = old_steps.get(t.name)
        if o is None:
            lines.append(f"新增步骤「{t.label}」→ {t.target.label}")
        elif o != t:
            lines.append(f"修改步骤「{t.label}」：检查 {list(o.guards)} → {list(t.guards)}，"
                         f"去向 {o.target.label} → {t.target.label}，角色 {_roles(o.roles)} → {_roles(t.roles)}")
    lines.extend(f"删除步骤「{t.label}」" for t in old.transitions if t.name not in {n.name for n in new.transitions})
    return lines


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a sample ticket already has, for the dry run."""

    checkin_location: bool
    checkin_photo: bool
    work_photos: int
    signed: bool


def _needs(workflow: Workflow, t: Transition, ev: Evidence) -> str:
    parts = []
    for g in t.guards:
        if g == "photos":
            need = option(workflow, "completion_photos")
            parts.append(f"照片 ≥{need}（现有 {ev.work_photos}{' ✓' if ev.work_photos >= need else ' ✗'}）")
        elif g == "location":
            if option(workflow, "checkin_requires_location"):
                parts.append("现场位置" + (" ✓" if ev.checkin_location else " ✗"))
        elif g == "checkin_photo":
            if option(workflow, "checkin_requires_photo"):
                parts.append("现场照片" + (" ✓" if ev.checkin_photo else " ✗"))
        elif g == "signoff":
            parts.append("客户签字" + (" ✓" if ev.signed else " ✗"))
        elif g == "assignee":
            parts.append("本人负责")
        elif g == "customer":
            parts.append("客户本人")
        else:
            parts.append(g)
    return "、".join(parts) or "无"


def path_to_close(workflow: Workflow, start: TicketStatus) -> list[Transition]:
    """The shortest forward path from `start` to 已结案 (cancel and reassign aside)."""
    skip = {"cancel", "reassign", "decline", "expire_offer", "still_broken", "qc_fail", "reject_plan", "reopen"}
    queue: deque[tuple[TicketStatus, list[Transition]]] = deque([(start, [])])
    seen = {start}
    while queue:
        state, path = queue.popleft()
        if state == S.CLOSED:
            return path
        for t in workflow.transitions:
            if state in t.sources and t.name not in skip and t.target not in seen:
                seen.add(t.target)
                queue.append((t.target, [*path, t]))
    return []


def dry_run(workflow: Workflow, ticket: Ticket, ev: Evidence) -> list[str]:
    lines = [f"试运行模板「{workflow.name}」于工单 {ticket.number}（当前：{ticket.status.label}）："]
    path = path_to_close(workflow, ticket.status)
    if ticket.status == S.CLOSED:
        lines.append("工单已结案。")
    elif not path:
        lines.append("⚠ 从当前状态无法到达「已结案」。")
    for i, t in enumerate(path, 1):
        lines.append(f"{i}. {t.label}（{_roles(t.roles)}）→ {t.target.label}；需要：{_needs(workflow, t, ev)}")
    if path and not any("signoff" in t.guards for t in path if t.target == S.CLOSED):
        lines.append("⚠ 结案步骤没有「signoff」检查；系统仍会拒绝任何没有客户签字的结案。")
    return lines


async def evidence(ctx: Context, ticket: Ticket) -> Evidence:
    checkin = section(ticket, "checkin")
    started = (ticket.data.get("work") or {}).get("started_at")
    since = datetime.fromisoformat(started) if started else None
    photos = distinct_photos(await ctx.uow.list_photos(ticket.number), purpose=WORK, since=since)
    return Evidence(bool(checkin.get("location")), bool(checkin.get("photo")), photos, is_signed(ticket))


# --- commands ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ShowTemplate:
    pass


@dataclass(frozen=True, slots=True)
class TemplateHistory:
    pass


@dataclass(frozen=True, slots=True)
class ProposeTemplate:
    """A change: set an option, add/remove a guard, switch to a built-in, roll back, or import JSON."""

    kind: str  # option, add_guard, remove_guard, switch, rollback, import
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DryRunTemplate:
    number: str


@dataclass(frozen=True, slots=True)
class ProposeReopenUnsigned:
    pass


@dataclass(frozen=True, slots=True)
class Confirm:
    pass


@dataclass(frozen=True, slots=True)
class Abandon:
    pass


async def _current(ctx: Context) -> tuple[int, Workflow]:
    workflow = await sync_workflow(ctx)
    latest = await ctx.uow.latest_config(WORKFLOW_KIND)
    return (latest[0] if latest else 0), workflow


def _describe(workflow: Workflow, version: int) -> str:
    opts = "；".join(f"{OPTION_LABELS.get(k, k)}={option(workflow, k)}" for k in DEFAULT_OPTIONS)
    steps = "\n".join(
        f"· {t.label}：{'/'.join(sorted(s.label for s in t.sources))} → {t.target.label}"
        f"（{_roles(t.roles)}{'；检查 ' + ','.join(t.guards) if t.guards else ''}）"
        for t in workflow.transitions)
    return f"流程模板「{workflow.name}」版本 {version or '出厂默认'}\n设置：{opts}\n步骤：\n{steps}"


@handles(ShowTemplate)
async def show_template(ctx: Context, _cmd: ShowTemplate) -> Workflow:
    version, workflow = await _current(ctx)
    await ctx.tell(ctx.actor.id, _describe(workflow, version))
    return workflow


@handles(TemplateHistory)
async def template_history(ctx: Context, _cmd: TemplateHistory) -> list[dict[str, Any]]:
    ctx.require_role(Role.ADMIN, Role.SUPERVISOR)
    rows = await ctx.uow.config_history(WORKFLOW_KIND)
    if not rows:
        await ctx.tell(ctx.actor.id, "流程模板还没有修改过（使用出厂默认）。")
    else:
        await ctx.tell(ctx.actor.id, "流程模板版本：\n" + "\n".join(
            f"v{r['version']} {r['created_at'][:16].replace('T', ' ')} {r['actor_id']}：{r['note']}" for r in rows))
    return rows


async def _proposed(ctx: Context, cmd: ProposeTemplate, current: Workflow) -> tuple[Workflow, str]:
    args = cmd.args
    if cmd.kind == "option" and len(args) == 2:
        return set_option(current, args[0], args[1]), f"设置 {args[0]}={args[1]}"
    if cmd.kind in {"add_guard", "remove_guard"} and len(args) == 2:
        add = cmd.kind == "add_guard"
        return change_guard(current, args[0], args[1], add=add), f"{'添加' if add else '去掉'}检查 {args[0]}.{args[1]}"
    if cmd.kind == "switch" and len(args) == 1:
        templates = builtin_templates()
        if args[0] not in templates:
            raise InvalidInput(f"没有内置模板「{args[0]}」。可用：{'、'.join(templates)}。")
        return templates[args[0]], f"切换为内置模板 {args[0]}"
    if cmd.kind == "rollback" and len(args) == 1:
        version = int(args[0].lstrip("vV")) if args[0].lstrip("vV").isdigit() else -1
        payload = await ctx.uow.config_version(WORKFLOW_KIND, version)
        if payload is None:
            raise NotFound(f"没有流程模板版本 {args[0]}。发送「模板 历史」查看。")
        return Workflow.from_dict(payload), f"回滚到 v{version}"
    if cmd.kind == "import" and len(args) == 1:
        return parse_template_json(args[0]), "导入模板 JSON"
    raise InvalidInput("模板命令格式不对。发送「模板 帮助」查看用法。")


async def _save_template(ctx: Context, based_on: int, workflow: Workflow, note: str, risk: list[str]) -> int:
    version = await ctx.uow.save_config(WORKFLOW_KIND, workflow.to_dict(), actor_id=ctx.actor.id, note=note,
                                        at=ctx.now, based_on=based_on)
    await ctx.audit("config_changed", {"kind": WORKFLOW_KIND, "version": version, "note": note, "high_risk": risk})
    install_workflow(ctx.service, version, workflow)
    return version


async def _save_draft(ctx: Context, payload: dict[str, Any], note: str) -> int:
    return await ctx.uow.save_config(DRAFT_KIND, payload, actor_id=ctx.actor.id, note=note, at=ctx.now)


async def pending_draft(ctx: Context) -> tuple[int, dict[str, Any]] | None:
    """The actor's latest draft if it still waits for 确认 (not confirmed, abandoned or expired)."""
    for row in await ctx.uow.config_history(DRAFT_KIND, limit=100):
        if row["actor_id"] != ctx.actor.id:
            continue
        if ctx.now - datetime.fromisoformat(row["created_at"]) > DRAFT_TTL:
            return None
        payload = await ctx.uow.config_version(DRAFT_KIND, row["version"])
        if not payload or payload.get("action") in {"done", "abandoned"}:
            return None
        return row["version"], payload
    return None


@handles(ProposeTemplate)
async def propose_template(ctx: Context, cmd: ProposeTemplate) -> int | None:
    """Apply a low-risk change at once; keep a high-risk one as a draft until 确认."""
    ctx.require_role(Role.ADMIN)
    loaded, current = await _current(ctx)
    proposed, note = await _proposed(ctx, cmd, current)
    validate(proposed)
    changes = diff(current, proposed)
    if not changes:
        await ctx.tell(ctx.actor.id, "模板没有变化。")
        return None
    risk = risks(current, proposed)
    if risk:
        await _save_draft(ctx, {"action": "template", "workflow": proposed.to_dict(), "note": note, "risks": risk},
                          note)
        await ctx.audit("config_change_pending", {"kind": WORKFLOW_KIND, "note": note, "high_risk": risk})
        await ctx.tell(ctx.actor.id, "⚠ 高风险修改：\n· " + "\n· ".join(risk) + "\n变更：\n· " + "\n· ".join(changes)
                       + "\n可先发送「模板 试运行 工单号」查看效果。"
                       "确认执行请回复「确认」，放弃请回复「放弃」（15 分钟内有效）。")
        return None
    version = await _save_template(ctx, loaded, proposed, note, [])
    await ctx.tell(ctx.actor.id, f"流程模板已更新为 v{version}：\n· " + "\n· ".join(changes))
    return version


@handles(DryRunTemplate)
async def dry_run_template(ctx: Context, cmd: DryRunTemplate) -> list[str]:
    ctx.require_role(Role.ADMIN, Role.SUPERVISOR)
    _version, current = await _current(ctx)
    ticket = await ctx.ticket(cmd.number, lock=False)
    draft = await pending_draft(ctx)
    workflow = Workflow.from_dict(draft[1]["workflow"]) if draft and draft[1].get("action") == "template" else current
    lines = dry_run(workflow, ticket, await evidence(ctx, ticket))
    if workflow is not current:
        lines.insert(0, "（按待确认的草案；不会修改任何数据）")
        lines.extend(["与当前模板相比：", *dry_run(current, ticket, await evidence(ctx, ticket))[1:]])
    else:
        lines.insert(0, "（按当前模板；不会修改任何数据）")
    await ctx.tell(ctx.actor.id, "\n".join(lines))
    return lines


@handles(ProposeReopenUnsigned)
async def propose_reopen_unsigned(ctx: Context, _cmd: ProposeReopenUnsigned) -> list[str]:
    ctx.require_role(Role.ADMIN)
    closed = await ctx.uow.list_tickets(statuses={S.CLOSED}, limit=100_000)
    numbers = sorted(t.number for t in closed if not is_signed(t))
    if not numbers:
        await ctx.tell(ctx.actor.id, "没有缺少客户签字的已结案工单。")
        return []
    await _save_draft(ctx, {"action": "reopen_unsigned", "numbers": numbers}, f"重开 {len(numbers)} 张未签字工单")
    shown = "、".join(numbers[:20]) + ("…" if len(numbers) > 20 else "")
    await ctx.tell(ctx.actor.id, f"⚠ 共有 {len(numbers)} 张已结案工单缺少客户签字：{shown}\n"
                   "回复「确认」将它们全部重开并通知客户和技师；回复「放弃」取消（15 分钟内有效）。")
    return numbers


async def _reopen_unsigned(ctx: Context, numbers: list[str]) -> list[str]:
    reopened = []
    for number in numbers:
        ticket = await ctx.uow.get_ticket(number, lock=True)
        if ticket is None or ticket.status != S.CLOSED or is_signed(ticket):
            continue
        section(ticket, "rework")["reopened_unsigned_at"] = ctx.now.isoformat()
        await ctx.move(ticket, "reopen", payload={"reason": "结案缺少客户签字"})
        await ctx.tell(ticket.customer_id, f"您的工单 {number} 此前在未经您签字确认的情况下被结案，现已重新打开，"
                       "我们会尽快与您确认维修结果。", ticket=ticket)
        if ticket.assignee_id:
            await ctx.tell(ticket.assignee_id, f"工单 {number} 因缺少客户签字已重开，请联系客户确认。", ticket=ticket)
        reopened.append(number)
    return reopened


@handles(Confirm)
async def confirm(ctx: Context, _cmd: Confirm) -> Any:
    draft = await pending_draft(ctx)
    if draft is None:
        raise NotFound("没有待确认的操作（或已超过 15 分钟）。")
    version, payload = draft
    ctx.require_role(Role.ADMIN)
    await _save_draft(ctx, {"action": "done", "draft": version}, f"确认草案 {version}")
    if payload["action"] == "template":
        loaded, current = await _current(ctx)
        proposed = validate(Workflow.from_dict(payload["workflow"]))
        note = payload["note"] + "（已确认高风险）"
        saved = await _save_template(ctx, loaded, proposed, note, risks(current, proposed))
        await ctx.tell(ctx.actor.id, f"已确认，流程模板已更新为 v{saved}。")
        return saved
    reopened = await _reopen_unsigned(ctx, list(payload["numbers"]))
    await ctx.audit("unsigned_reopened", {"count": len(reopened), "numbers": reopened})
    await ctx.tell(ctx.actor.id, f"已确认，重开了 {len(reopened)} 张缺少签字的工单。")
    return reopened


@handles(Abandon)
async def abandon(ctx: Context, _cmd: Abandon) -> None:
    draft = await pending_draft(ctx)
    if draft is None:
        raise NotFound("没有待确认的操作。")
    await _save_draft(ctx, {"action": "abandoned", "draft": draft[0]}, f"放弃草案 {draft[0]}")
    await ctx.tell(ctx.actor.id, "已放弃待确认的修改。")
