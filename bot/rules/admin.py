"""Admin rule management as one service command: each runs in one transaction (version row, audit, reply).

Rules live in `config_versions` (kind "rules", payload `RuleSet.to_dict()`); every change or
rollback appends a version with actor and note and is audited as "rules_changed" with the
summary and a structured diff. History is never rewritten: a rollback stores a copy of the old
version as a new one. High-risk changes (a category deleted, several keywords removed, or a
rollback that does either) wait per admin in kind "rules_pending:<hash of admin id>" until
确认 / 取消, for at most `PENDING_TTL`; 确认 re-applies the change to the rules as they are then.

The handler returns `Installed(version, payload)` when the live rules changed; the caller
installs it into the process's RuleBook after the commit (other processes refresh by sweep).
For `规则 测试` it returns a `DryRunPlan` (the rules to compare); the caller builds and runs
the classifiers after the commit, so no transaction (on SQLite: the write lock) waits for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from bot.rules.dry_run import DryRunPlan
from bot.rules.rulebook import RULES_KIND, rules_from_payload, shipped_rules, stored_rules
from core.errors import InvalidInput, NotFound
from core.model import Role
from core.pending_changes import pending_change as shared_pending_change
from core.pending_changes import pending_kind as shared_pending_kind
from core.service import Context, handles
from nlp.errors import NlpError, RuleChangeError
from nlp.rule_changes import apply_change, change_from_dict, change_to_dict, describe_change, is_high_risk
from nlp.rule_commands import (
    RULE_HELP,
    Cancel,
    ChangeRules,
    Confirm,
    DryRun,
    ListRules,
    Rollback,
    RuleCommand,
    ShowHelp,
    ShowHistory,
)
from nlp.rule_diff import diff_rules
from nlp.rules import PRECEDENCE_RULE_ZH, RuleSet

PENDING_TTL = timedelta(minutes=15)
PENDING_KIND_PREFIX = "rules_pending:"  # + 16 hex digits: fits config_versions.kind (32 characters)
HISTORY_LIMIT = 15


@dataclass(frozen=True, slots=True)
class RunRuleCommand:
    command: RuleCommand


@dataclass(frozen=True, slots=True)
class Installed:
    """The live rules changed to this stored version."""

    version: int
    payload: dict[str, Any]


def pending_kind(admin_id: str) -> str:
    return shared_pending_kind(PENDING_KIND_PREFIX, admin_id)


async def pending_change(ctx: Context) -> dict[str, Any] | None:
    """The actor's unconfirmed rules change, if it is still fresh."""
    return await shared_pending_change(ctx, PENDING_KIND_PREFIX, PENDING_TTL)


@handles(RunRuleCommand)
async def run_rule_command(ctx: Context, cmd: RunRuleCommand) -> Installed | DryRunPlan | None:
    ctx.require_role(Role.ADMIN)
    try:
        return await _run(ctx, cmd.command)
    except NlpError as error:
        raise InvalidInput(error.user_message, **error.data) from error


async def _run(ctx: Context, command: RuleCommand) -> Installed | DryRunPlan | None:
    match command:
        case ListRules():
            await ctx.tell(ctx.actor.id, describe_rules(await stored_rules(ctx.uow)))
        case ShowHelp():
            await ctx.tell(ctx.actor.id, RULE_HELP)
        case ShowHistory():
            await _history(ctx)
        case DryRun():
            return await _plan_dry_run(ctx)  # classified by the caller, outside this transaction
        case ChangeRules(change):
            current = await stored_rules(ctx.uow)
            result = apply_change(current, change)
            if not result.changed:
                await ctx.tell(ctx.actor.id, result.message)
            elif is_high_risk(change):
                await _propose(ctx, current, result.rules, {"change": change_to_dict(change)}, describe_change(change))
            else:
                installed = await _save(ctx, current, result.rules, result.summary, {"change": change_to_dict(change)})
                await ctx.tell(ctx.actor.id, result.message + _EFFECT)
                return installed
        case Rollback(version):
            return await _rollback(ctx, version)
        case Confirm():
            return await _confirm(ctx)
        case Cancel():
            pending = await pending_change(ctx)
            if pending is None:
                raise NotFound("没有待确认的规则修改（或已超过 15 分钟）。")
            await _close_pending(ctx, "cancelled")
            await ctx.audit("rules_change_cancelled", {"description": pending.get("description", "")})
            await ctx.tell(ctx.actor.id, f"已取消待确认的修改：{pending.get('description', '')}。规则没有变化。")
    return None


_EFFECT = "\n已生效；其他服务进程会在几秒内同步。"
_VERSION_ARROW = re.compile(r"（规则版本 \d+ → \d+）")


async def _save(ctx: Context, before: RuleSet, after: RuleSet, note: str, what: dict[str, Any]) -> Installed:
    payload = replace(after, version=before.version + 1).to_dict()
    note = _VERSION_ARROW.sub("", note)  # the history line shows the version already
    version = await ctx.uow.save_config(RULES_KIND, payload, actor_id=ctx.actor.id, note=note, at=ctx.now,
                                        based_on=before.version)
    diff = diff_rules(before, after)
    await ctx.audit("rules_changed", {"version": version, "previous_version": before.version, "summary": note,
                                      "diff": diff.to_json_dict(), **what})
    return Installed(version, payload)


async def _propose(ctx: Context, current: RuleSet, proposed: RuleSet, what: dict[str, Any], description: str) -> None:
    replaced = await pending_change(ctx)
    diff = diff_rules(current, proposed)
    await ctx.uow.save_config(pending_kind(ctx.actor.id),
                              {"state": "pending", "admin_id": ctx.actor.id, "description": description,
                               "base_version": current.version, **what},
                              actor_id=ctx.actor.id, note=description, at=ctx.now)
    await ctx.audit("rules_change_pending", {"description": description, "diff": diff.to_json_dict(), **what})
    lines = [f"⚠ 高风险修改，需要确认：{description}"]
    if replaced is not None:
        lines.append(f"（之前待确认的「{replaced.get('description', '')}」已被这次替换）")
    lines += ["将产生的变化：", *("· " + line for line in diff.lines())]
    lines += ["可先发送「规则 测试 <消息>」对比修改前后的分类结果。",
              "回复「确认」执行，回复「取消」放弃（15 分钟内有效）。"]
    await ctx.tell(ctx.actor.id, "\n".join(lines))


async def _close_pending(ctx: Context, state: str) -> None:
    await ctx.uow.save_config(pending_kind(ctx.actor.id), {"state": state, "admin_id": ctx.actor.id},
                              actor_id=ctx.actor.id, note=state, at=ctx.now)


async def _proposed_rules(ctx: Context, current: RuleSet, pending: dict[str, Any]) -> tuple[RuleSet, str]:
    """The pending change applied to the rules as they are now, and its summary."""
    if "rollback_to" in pending:
        target = await _version(ctx, int(pending["rollback_to"]))
        return replace(target, version=current.version + 1), f"回滚到 v{pending['rollback_to']}"
    result = apply_change(current, change_from_dict(pending["change"]))
    return result.rules, result.summary


async def _confirm(ctx: Context) -> Installed | None:
    pending = await pending_change(ctx)
    if pending is None:
        raise NotFound("没有待确认的规则修改（或已超过 15 分钟）。")
    current = await stored_rules(ctx.uow)
    try:
        proposed, summary = await _proposed_rules(ctx, current, pending)
    except (RuleChangeError, NotFound) as error:
        # The rules changed since the proposal (e.g. the category is gone): drop it, say why.
        await _close_pending(ctx, "failed")
        message = error.user_message
        await ctx.audit("rules_change_failed", {"description": pending.get("description", ""), "reason": message})
        await ctx.tell(ctx.actor.id, f"待确认的修改已无法执行：{message}\n规则没有变化。")
        return None
    await _close_pending(ctx, "confirmed")
    what: dict[str, Any] = {k: pending[k] for k in ("change", "rollback_to") if k in pending}
    installed = await _save(ctx, current, proposed, summary + "（已确认）", {**what, "confirmed": True})
    await ctx.tell(ctx.actor.id, f"已确认。{summary}" + _EFFECT)
    return installed


async def _version(ctx: Context, version: int) -> RuleSet:
    if version == 0:
        return shipped_rules()
    payload = await ctx.uow.config_version(RULES_KIND, version)
    if payload is None:
        raise NotFound(f"没有规则版本 v{version}。发送「规则 历史」查看已有版本（v0 为出厂默认规则）。",
                       version=version)
    return rules_from_payload(version, payload)


async def _rollback(ctx: Context, version: int) -> Installed | None:
    current = await stored_rules(ctx.uow)
    if version == current.version:
        await ctx.tell(ctx.actor.id, f"当前规则已经是 v{version}，无需回滚。")
        return None
    target = await _version(ctx, version)
    diff = diff_rules(current, target)
    if diff.empty:
        await ctx.tell(ctx.actor.id, f"v{version} 与当前规则 v{current.version} 内容相同，无需回滚。")
        return None
    if diff.high_risk:
        await _propose(ctx, current, target, {"rollback_to": version}, f"回滚到 v{version}")
        return None
    installed = await _save(ctx, current, target, f"回滚到 v{version}", {"rollback_to": version})
    changes = "\n".join("· " + line for line in diff.lines())
    await ctx.tell(ctx.actor.id, f"已回滚到 v{version} 的规则，保存为新版本 v{installed.version}"
                   f"（历史记录不会被改写）。\n变化：\n{changes}{_EFFECT}")
    return installed


async def _history(ctx: Context) -> None:
    rows = await ctx.uow.config_history(RULES_KIND, limit=HISTORY_LIMIT)
    if not rows:
        await ctx.tell(ctx.actor.id, "规则还没有修改过，当前使用出厂默认规则（v0）。")
        return
    names: dict[str, str] = {}
    for actor_id in {r["actor_id"] for r in rows}:
        person = await ctx.uow.get_person(actor_id)
        names[actor_id] = person.name if person else actor_id
    lines = [
        f"v{r['version']}{'（当前）' if i == 0 else ''} "
        f"{datetime.fromisoformat(r['created_at']).astimezone(ctx.config.timezone):%m-%d %H:%M} "
        f"{names[r['actor_id']]}：{r['note']}"
        for i, r in enumerate(rows)
    ]
    if rows[-1]["version"] == 1:
        lines.append("v0 出厂默认规则")
    await ctx.tell(ctx.actor.id, "规则版本（新的在前）：\n" + "\n".join(lines) + "\n回滚请发送「规则 回滚 版本号」。")


async def _plan_dry_run(ctx: Context) -> DryRunPlan:
    current = await stored_rules(ctx.uow)
    pending = await pending_change(ctx)
    if pending is None:
        return DryRunPlan(current)
    description = str(pending.get("description", ""))
    try:
        proposed, _summary = await _proposed_rules(ctx, current, pending)
    except (RuleChangeError, NotFound) as error:
        return DryRunPlan(current, None, description, error.user_message)
    return DryRunPlan(current, proposed, description)


def describe_rules(rules: RuleSet) -> str:
    shipped = "（出厂默认）" if rules.version == 0 else ""
    lines = [f"当前规则 v{rules.version}{shipped}，共 {len(rules.categories)} 个分类："]
    for category in rules.by_precedence():
        title = f"【{category.name}】优先级 {category.precedence}"
        if category.description:
            title += f"｜{category.description}"
        lines += [title, f"关键词（{len(category.keywords)}）：{'、'.join(category.keywords) or '（无）'}"]
        if category.hints:
            lines.append(f"部件词 {len(category.hints)} 个（只在消息已像故障时辅助判断）")
    lines += [f"优先级规则：{PRECEDENCE_RULE_ZH}", "发送「规则 帮助」查看全部命令。"]
    return "\n".join(lines)
