"""The workflow template page: the eight options (in the chat's units), each step's checks, a switch to a
built-in template; a preview with the diff, the high-risk findings and, for a sample ticket, the dry
run (the path to 已结案 and what each step still needs) under the current and the changed template.

Saving runs the chat's `ProposeTemplate`: one change is the chat's own verb (设置 / 添加检查 / 去掉检查 /
切换), several at once are `导入 <JSON>` of the edited template, so one save is one version. A
high-risk change is parked as a draft by the core, as in the chat; the page's confirm button is the
「确认」 (the template's `Confirm` right after). Rollback is `模板 回滚` (v0: `模板 切换 维修服务`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

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
from core.errors import InvalidInput, TicketbotError
from core.lifecycle.common import WORKFLOW_KIND, sync_workflow
from core.lifecycle.template import (
    OPTION_ALIASES,
    Confirm,
    ProposeTemplate,
    builtin_templates,
    change_guard,
    diff,
    dry_run,
    evidence,
    risks,
    set_option,
    validate,
)
from core.model import ROLE_LABELS
from core.service import _GUARDS, Context
from core.workflow import Workflow, option

SECTION = SECTIONS["template"]
DEFAULT_TEMPLATE = "维修服务"
CONFIRM_NOTE = "在聊天中需要回复「确认」；在这里点击确认按钮即为确认。"


def option_display(workflow: Workflow, alias: str) -> str:
    """An option's value as the chat writes it (开/关, minutes, hours ...)."""
    key, factor, kind = OPTION_ALIASES[alias]
    value = option(workflow, key)
    if kind == "bool":
        return "开" if value else "关"
    return f"{value / factor:g}"


def _guards(raw: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(g for g in raw.replace("，", ",").replace("、", ",").replace(" ", ",").split(",") if g))


ChatStep = tuple[str, tuple[str, ...]]  # a ProposeTemplate (kind, args)


def proposed_from_form(current: Workflow, form: Mapping[str, str]) -> tuple[Workflow, list[ChatStep]]:
    """The edited template and the chat commands (kind, args) it is made of."""
    if (form.get("op") or "edit") == "switch":
        name = (form.get("builtin") or "").strip()
        templates = builtin_templates()
        if name not in templates:
            raise FormError("builtin", f"没有内置模板「{name[:20]}」。可用：{'、'.join(templates)}。")
        return templates[name], [("switch", (name,))]
    workflow = current
    steps: list[ChatStep] = []
    for alias in OPTION_ALIASES:
        raw = (form.get(f"opt.{alias}") or "").strip()
        if raw == "" or raw == option_display(current, alias):
            continue
        try:
            workflow = set_option(workflow, alias, raw)
        except InvalidInput as error:
            raise FormError(f"opt.{alias}", error.user_message) from error
        steps.append(("option", (alias, raw)))
    for t in current.transitions:
        name = f"guards.{t.name}"
        if name not in form:
            continue
        wanted = _guards(form.get(name) or "")
        unknown = [g for g in wanted if g not in _GUARDS]
        if unknown:
            raise FormError(name, f"「{t.label}」没有名为「{'、'.join(unknown)}」的检查项。"
                                  f"可用：{'、'.join(sorted(_GUARDS))}。")
        for guard in wanted:
            if guard not in t.guards:
                workflow = change_guard(workflow, t.name, guard, add=True)
                steps.append(("add_guard", (t.name, guard)))
        for guard in t.guards:
            if guard not in wanted:
                workflow = change_guard(workflow, t.name, guard, add=False)
                steps.append(("remove_guard", (t.name, guard)))
    try:
        validate(workflow)
    except InvalidInput as error:
        raise FormError("template", error.user_message) from error
    return workflow, steps


async def _current(request: web.Request, session: StaffSession) -> tuple[int, Workflow]:
    runtime = runtime_of(request)
    async with runtime.uow() as uow:
        ctx = Context(uow=uow, clock=runtime.service.clock, actor=session.person, service=runtime.service)
        workflow = await sync_workflow(ctx)
        latest = await uow.latest_config(WORKFLOW_KIND)
    return (latest[0] if latest else 0), workflow


def _roles(roles: frozenset[object]) -> str:
    return "、".join(ROLE_LABELS[r] for r in sorted(roles)) or "系统"  # type: ignore[index,type-var]


async def page(request: web.Request, session: StaffSession, *, error: FormError | None = None,
               form: Mapping[str, str] | None = None, status: int = 200) -> web.Response:
    runtime = runtime_of(request)
    version, workflow = await _current(request, session)
    async with runtime.uow() as uow:
        rows = await history(uow, SECTION, runtime.service.config.timezone)
    values = {f"opt.{a}": option_display(workflow, a) for a in OPTION_ALIASES}
    values.update({f"guards.{t.name}": ",".join(t.guards) for t in workflow.transitions})
    values.update({k: v for k, v in (form or {}).items() if k != "csrf_token"})
    steps = [{"name": t.name, "label": t.label, "sources": "/".join(sorted(s.label for s in t.sources)),
              "target": t.target.label, "roles": _roles(t.roles)} for t in workflow.transitions]
    return render(request, session, "console/admin_template.html", status=status, section=SECTION, version=version,
                  workflow=workflow, history=rows, error=error, values=values, options=OPTION_ALIASES, steps=steps,
                  guards=sorted(_GUARDS), builtins=list(builtin_templates()), saved=request.query.get("saved"))


async def _dry_runs(request: web.Request, session: StaffSession, number: str, current: Workflow,
                    proposed: Workflow) -> list[Table]:
    runtime = runtime_of(request)
    async with runtime.uow() as uow:
        ctx = Context(uow=uow, clock=runtime.service.clock, actor=session.person, service=runtime.service)
        try:
            ticket = await ctx.ticket(number, lock=False)
        except TicketbotError as error:
            raise FormError("sample", error.user_message) from error
        found = await evidence(ctx, ticket)
    return [Table(f"试运行（{label}）：{ticket.number}", ["步骤"], [[line] for line in dry_run(w, ticket, found)])
            for label, w in (("修改后", proposed), ("当前", current))]


async def preview(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.Response:
    version, current = await _current(request, session)
    proposed, _steps = proposed_from_form(current, form)
    found = risks(current, proposed)
    sample = (form.get("sample") or "").strip()
    tables = await _dry_runs(request, session, sample, current, proposed) if sample else []
    hidden = [(k, v) for k, v in form.items() if k not in {"csrf_token", "based_on"}]
    hidden.append(("based_on", str(version)))
    changes = diff(current, proposed)
    if proposed.name != current.name:
        changes.insert(0, f"模板：{current.name} → {proposed.name}")
    return render_preview(request, session, SECTION.title, Preview(
        title=f"预览：流程模板「{current.name}」（当前版本 {version or '出厂默认'}）",
        action=f"{ADMIN_ROOT}template/save", hidden=hidden, lines=changes,
        warnings=[f"高风险：{r}" for r in found] + ([CONFIRM_NOTE] if found else []),
        tables=tables, blocked="" if changes else "模板没有变化，无需保存。", back=f"{ADMIN_ROOT}template",
        confirm_label="确认高风险修改并保存" if found else "确认保存"))


async def save(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.StreamResponse:
    version, current = await _current(request, session)
    proposed, steps = proposed_from_form(current, form)
    if int_field(form, "based_on") != version:
        raise FormError("based_on", "流程模板在您预览之后被修改过，请重新预览。", status=409)
    if not diff(current, proposed) and proposed.name == current.name:
        raise FormError("template", "模板没有变化。")
    kind, args = steps[0] if len(steps) == 1 else ("import", (json.dumps(replace(proposed).to_dict(),
                                                                          ensure_ascii=False),))
    saved = await run_as(request, session.person, ProposeTemplate(kind, args), field="template")
    if risks(current, proposed):
        saved = await run_as(request, session.person, Confirm(), field="template")
    return saved_redirect("template", saved)


async def rollback(request: web.Request, session: StaffSession, version: int, based_on: int) -> object:
    _loaded, current = await _current(request, session)
    command = ProposeTemplate("switch", (DEFAULT_TEMPLATE,)) if version == 0 else \
        ProposeTemplate("rollback", (str(version),))
    async with runtime_of(request).uow() as uow:
        payload = await uow.config_version(WORKFLOW_KIND, version) if version else None
    target = Workflow.from_dict(payload) if payload else builtin_templates()[DEFAULT_TEMPLATE]
    saved = await run_as(request, session.person, command, field="version")
    if risks(current, target):
        saved = await run_as(request, session.person, Confirm(), field="version")
    return saved
