"""The keyword rules page: categories and keywords, one change at a time (the chat's five changes), a
preview that classifies the most recent tickets under the current and the changed rules and lists the
ones whose category would change, then the chat's command.

The form is read by the chat's own parser (`规则 添加 <分类> <词…>` etc. is built from the fields), so
quoting, separators and every refusal are the chat's. Saving runs `RunRuleCommand(ChangeRules(…))`;
a high-risk change (a category deleted, three or more keywords removed) is what the chat parks for
「确认」: the preview says so, and the confirm button on the page is that confirmation
(`RunRuleCommand(Confirm())` right after). The live classifier of this process is swapped at once;
the others refresh within seconds, as after a chat change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bot.console.admin_versions import SECTIONS, history
from bot.console.admin_web import (
    ADMIN_ROOT,
    FormError,
    Preview,
    Table,
    int_field,
    render,
    render_preview,
    run_as,
    runtime_of,
    saved_redirect,
)
from bot.console.auth import StaffSession
from bot.rules.admin import Installed, RunRuleCommand
from bot.rules.dry_run import INTENT_LABELS, clip
from bot.rules.rulebook import RuleBook, stored_rules
from nlp.classifier import Classification, FaultClassifier, build_classifier
from nlp.errors import RuleChangeError, RuleCommandError
from nlp.rule_changes import RuleChange, apply_change, describe_change, is_high_risk
from nlp.rule_commands import ChangeRules, Confirm, Rollback, parse_rule_command
from nlp.rule_diff import diff_rules
from nlp.rules import RuleSet

SECTION = SECTIONS["rules"]
DRY_RUN_TICKETS = 200  # the most recent tickets the preview classifies
SHOWN_CHANGES = 50
OPERATIONS = {
    "add": ("添加关键词", "添加"),
    "remove": ("删除关键词", "删除"),
    "add_category": ("新增分类", "新增分类"),
    "rename": ("重命名分类", "重命名"),
    "delete_category": ("删除分类", "删除分类"),
}
# RuleChangeError codes → the form field they are about.
_CODE_FIELDS = {"unknown_category": "category", "last_category": "category", "empty_keyword": "keywords",
                "keyword_too_long": "keywords", "keyword_no_text": "keywords", "unknown_keyword": "keywords",
                "too_many_keywords": "keywords"}


def _name_field(op: str) -> str:
    return "new_name" if op == "rename" else "category"


def change_from_form(form: Mapping[str, str]) -> RuleChange:
    """The change the form describes, read by the chat's parser. Raises FormError naming the field."""
    op = (form.get("op") or "").strip()
    if op not in OPERATIONS:
        raise FormError("op", f"请选择一种修改：{'、'.join(label for label, _ in OPERATIONS.values())}。")
    category = (form.get("category") or "").strip()
    if not category:
        raise FormError("category", "请填写分类名称。")
    if any(ch.isspace() for ch in category):
        raise FormError("category", "分类名称不能包含空格。")
    parts = ["规则", OPERATIONS[op][1], category]
    if op in {"add", "remove"}:
        keywords = (form.get("keywords") or "").strip()
        if not keywords:
            raise FormError("keywords", "请至少填写一个关键词（多个用空格、逗号或顿号分隔）。")
        parts.append(keywords)
    elif op == "rename":
        new_name = (form.get("new_name") or "").strip()
        if not new_name or any(ch.isspace() for ch in new_name):
            raise FormError("new_name", "请填写新的分类名称（不含空格）。")
        parts.append(new_name)
    elif op == "add_category" and (form.get("description") or "").strip():
        parts.append((form.get("description") or "").strip())
    try:
        command = parse_rule_command(" ".join(parts))
    except RuleCommandError as error:
        raise FormError("keywords" if op in {"add", "remove"} else _name_field(op), error.user_message) from error
    if not isinstance(command, ChangeRules):
        raise FormError("op", "看不懂这条规则修改。")
    return command.change


def _field_of(error: RuleChangeError, op: str) -> str:
    code = str(error.data.get("code", ""))
    if code in {"category_exists", "bad_category_name"}:
        return _name_field(op)
    return _CODE_FIELDS.get(code, "category")


def applied(current: RuleSet, change: RuleChange, op: str) -> Any:
    try:
        return apply_change(current, change)
    except RuleChangeError as error:
        raise FormError(_field_of(error, op), error.user_message) from error


def _label(result: Classification) -> str:
    if result.category is not None:
        return result.category
    return "无（" + INTENT_LABELS.get(result.intent, result.intent.value).split("（")[0].split(" →")[0] + "）"


async def dry_run_tickets(request: web.Request, current: RuleSet, proposed: RuleSet) -> tuple[Table, int, int]:
    """Classify the most recent tickets' descriptions under both rule sets (off the event loop)."""
    runtime = runtime_of(request)
    async with runtime.uow() as uow:
        tickets = await uow.list_tickets(limit=DRY_RUN_TICKETS)
    live = runtime.service.classifier
    if isinstance(live, RuleBook) and live.version == current.version:
        await live.ready()
        before: FaultClassifier = live.classifier
    else:
        before = await build_classifier(current)
    after = await build_classifier(proposed)

    def classify() -> list[list[str]]:
        rows = []
        for ticket in tickets:
            old, new = before.classify(ticket.description), after.classify(ticket.description)
            if old.category != new.category:
                rows.append([ticket.number, clip(ticket.description, 40), _label(old), _label(new),
                             "、".join(new.keywords) or "—"])
        return rows

    rows = await asyncio.to_thread(classify)
    caption = (f"对最近 {len(tickets)} 张工单的试分类：{len(rows)} 张的分类会变化"
               + (f"（只列出前 {SHOWN_CHANGES} 张）" if len(rows) > SHOWN_CHANGES else ""))
    table = Table(caption, ["工单", "描述", "当前分类", "修改后分类", "修改后命中关键词"], rows[:SHOWN_CHANGES],
                  empty="没有工单的分类会变化。")
    return table, len(tickets), len(rows)


async def sample_table(current: RuleSet, proposed: RuleSet, text: str) -> Table:
    """`规则 测试 <消息>` for one message the admin typed, under both rule sets."""
    old = (await build_classifier(current)).classify(text)
    new = (await build_classifier(proposed)).classify(text)
    return Table(f"试分类：{clip(text, 40)}", ["", f"当前规则 v{current.version}", "修改后"], [
        ["分类", _label(old), _label(new)],
        ["命中关键词", "、".join(old.keywords) or "无", "、".join(new.keywords) or "无"],
        ["被否定的关键词", "、".join(old.negated) or "无", "、".join(new.negated) or "无"],
    ])


async def page(request: web.Request, session: StaffSession, *, error: FormError | None = None,
               form: Mapping[str, str] | None = None, status: int = 200) -> web.Response:
    runtime = runtime_of(request)
    async with runtime.uow() as uow:
        rules = await stored_rules(uow)
        rows = await history(uow, SECTION, runtime.service.config.timezone)
    return render(request, session, "console/admin_rules.html", status=status, section=SECTION,
                  version=rules.version, rules=rules, history=rows, error=error, values=dict(form or {}),
                  operations=OPERATIONS, saved=request.query.get("saved"))


async def preview(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.Response:
    runtime = runtime_of(request)
    op = (form.get("op") or "").strip()
    change = change_from_form(form)
    async with runtime.uow() as uow:
        current = await stored_rules(uow)
    result = applied(current, change, op)
    diff = diff_rules(current, result.rules)
    table, _count, _changed = await dry_run_tickets(request, current, result.rules)
    tables = [table]
    sample = (form.get("sample") or "").strip()[:500]
    if sample:
        tables.insert(0, await sample_table(current, result.rules, sample))
    warnings = [f"高风险修改：{describe_change(change)}。在聊天中需要回复「确认」；在这里点击确认按钮即为确认。"] \
        if is_high_risk(change) else []
    hidden = [(k, form.get(k, "")) for k in ("op", "category", "keywords", "new_name", "description")]
    hidden.append(("based_on", str(current.version)))
    return render_preview(request, session, SECTION.title, Preview(
        title=f"预览：{describe_change(change)}（当前规则 v{current.version}）", action=f"{ADMIN_ROOT}rules/save",
        hidden=hidden, lines=[*diff.lines(limit=50), *result.notices], warnings=warnings, tables=tables,
        blocked="" if result.changed else result.message, back=f"{ADMIN_ROOT}rules",
        confirm_label="确认高风险修改并保存" if warnings else "确认保存"))


async def _install(request: web.Request, outcome: object) -> None:
    live = runtime_of(request).service.classifier
    if isinstance(outcome, Installed) and isinstance(live, RuleBook):
        await live.install(outcome.version, outcome.payload)


async def save(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.StreamResponse:
    op = (form.get("op") or "").strip()
    change = change_from_form(form)
    based_on = int_field(form, "based_on")
    runtime = runtime_of(request)
    async with runtime.uow() as uow:
        current = await stored_rules(uow)
    if current.version != based_on:
        raise FormError("based_on", f"规则在您预览之后被修改过（当前 v{current.version}），请重新预览。", status=409)
    result = applied(current, change, op)
    if not result.changed:
        raise FormError(_name_field(op), result.message)
    outcome = await run_as(request, session.person, RunRuleCommand(ChangeRules(change)), field=_name_field(op))
    if is_high_risk(change):  # parked for 确认 by the chat's rule: the page's confirm button is that 确认
        outcome = await run_as(request, session.person, RunRuleCommand(Confirm()), field=_name_field(op))
    await _install(request, outcome)
    return saved_redirect("rules", outcome.version if isinstance(outcome, Installed) else "")


async def rollback_tables(request: web.Request, current: dict[str, Any], target: dict[str, Any]) -> list[Table]:
    """The rollback's dry run: the recent tickets whose category the old rules would change."""
    before = RuleSet.from_dict({**current, "version": current.get("version", 0)})
    table, _count, _changed = await dry_run_tickets(request, before, RuleSet.from_dict({**target, "version": 0}))
    return [table]


async def rollback(request: web.Request, session: StaffSession, version: int, based_on: int) -> object:
    runtime = runtime_of(request)
    async with runtime.uow() as uow:
        current = await stored_rules(uow)
        payload = await uow.config_version(SECTION.kind, version) if version else SECTION.default()
    high_risk = payload is not None and diff_rules(current, RuleSet.from_dict({**payload, "version": 0})).high_risk
    outcome = await run_as(request, session.person, RunRuleCommand(Rollback(version)), field="version")
    if high_risk:
        outcome = await run_as(request, session.person, RunRuleCommand(Confirm()), field="version")
    await _install(request, outcome)
    return outcome.version if isinstance(outcome, Installed) else None
