"""Admin pages under /console/admin/ (issue 22; docs/console-admin.md): what admins do by chat commands —
keyword rules, the SLA matrix, the workflow template, SOPs, dispatch weights, holidays.

Every section has the same shape and the same routes:

    GET  /console/admin/<section>             current version, edit form, history
    POST /console/admin/<section>/preview     the dry run of the edit (nothing stored)
    POST /console/admin/<section>/save        the confirm button of the preview: the chat's command
    GET  /console/admin/<section>/diff?from=&to=   what changed between two versions
    POST /console/admin/<section>/rollback    version → a preview of the rollback; with confirm=1 → done

Only admins (anyone else: an audited 403 from `staff`). Every POST is CSRF-checked (`posted_form`) and
runs core commands as the admin (`TicketService.handle`), so the audit and the history are the chat's.
Bad input answers 400 with the form again and the field named; nothing is saved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import ModuleType
from typing import Any

from aiohttp import web

from bot.console import admin_dispatch, admin_holidays, admin_rules, admin_sla, admin_sop, admin_template
from bot.console.admin_versions import SECTIONS, ConfigSection, current_version, payload_at
from bot.console.admin_web import (
    ADMIN_ROOT,
    FormError,
    Preview,
    int_field,
    render,
    render_preview,
    runtime_of,
    saved_redirect,
)
from bot.console.auth import StaffSession, posted_form, staff
from core.model import Role

PAGES: dict[str, ModuleType] = {
    "rules": admin_rules, "sla": admin_sla, "template": admin_template, "sop": admin_sop,
    "dispatch": admin_dispatch, "holidays": admin_holidays,
}
DESCRIPTIONS = {
    "rules": "故障分类的关键词：增删关键词与分类，对最近的工单试分类",
    "sla": "优先级 × 影响 × 时段 共 27 个单元格，按工作时间试算截止时间",
    "template": "流程模板的设置与每一步的检查项，可按样本工单试运行",
    "sop": "按分类/故障类型的标准作业步骤（Markdown，与聊天的 SOP 导出/导入相同）",
    "dispatch": "派单评分权重（资质 / 距离 / 负载 / 评分）与接单时限",
    "holidays": "正在使用的节假日与调休安排，管理员覆盖",
}


def _section(request: web.Request) -> tuple[ConfigSection, ModuleType]:
    slug = request.match_info["section"]
    if slug not in PAGES:
        raise web.HTTPNotFound(text="没有这个管理页面")
    return SECTIONS[slug], PAGES[slug]


async def _admin(request: web.Request) -> StaffSession:
    return await staff(request, Role.ADMIN)


async def index(request: web.Request) -> web.Response:
    session = await _admin(request)
    runtime = runtime_of(request)
    rows = []
    async with runtime.uow() as uow:
        for slug, section in SECTIONS.items():
            history = await uow.config_history(section.kind, limit=1)
            rows.append({"slug": slug, "title": section.title, "description": DESCRIPTIONS[slug],
                         "version": history[0]["version"] if history else 0,
                         "changed_at": datetime.fromisoformat(history[0]["created_at"]) if history else None})
    return render(request, session, "console/admin.html", sections=rows)


async def show(request: web.Request) -> web.StreamResponse:
    session = await _admin(request)
    _unused, module = _section(request)
    response: web.StreamResponse = await module.page(request, session)
    return response


async def _with_form_errors(request: web.Request, session: StaffSession, module: ModuleType, form: Mapping[str, str],
                            action: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await action()
    except FormError as error:
        response: web.StreamResponse = await module.page(request, session, error=error, form=form,
                                                         status=error.status)
        return response


async def preview(request: web.Request) -> web.StreamResponse:
    session = await _admin(request)
    _sec, module = _section(request)
    form = await posted_form(request, session)
    return await _with_form_errors(request, session, module, form, lambda: module.preview(request, session, form))


async def save(request: web.Request) -> web.StreamResponse:
    session = await _admin(request)
    _sec, module = _section(request)
    form = await posted_form(request, session)
    return await _with_form_errors(request, session, module, form, lambda: module.save(request, session, form))


async def diff(request: web.Request) -> web.Response:
    session = await _admin(request)
    section, _module = _section(request)
    try:
        old_version = int_field(request.query, "from")
        new_version = int_field(request.query, "to")
    except FormError as error:
        raise web.HTTPBadRequest(text=f"{error.field}: {error.message}") from None
    async with runtime_of(request).uow() as uow:
        old = await payload_at(uow, section, old_version)
        new = await payload_at(uow, section, new_version)
    if old is None or new is None:
        raise web.HTTPNotFound(text="没有这个版本")
    return render(request, session, "console/admin_diff.html", section=section, old_version=old_version,
                  new_version=new_version, lines=section.diff(old, new))


async def rollback(request: web.Request) -> web.StreamResponse:
    session = await _admin(request)
    section, module = _section(request)
    form = await posted_form(request, session)

    async def act() -> web.StreamResponse:
        version = int_field(form, "version")
        async with runtime_of(request).uow() as uow:
            current, payload = await current_version(uow, section)
            target = await payload_at(uow, section, version)
        if target is None:
            raise FormError("version", f"没有版本 {version}。")
        if form.get("confirm") != "1":
            lines = section.diff(payload, target)
            dry_run = getattr(module, "rollback_tables", None)  # a section's dry run of the rollback, if any
            tables = await dry_run(request, payload, target) if dry_run is not None else []
            return render_preview(request, session, section.title, Preview(
                title=f"预览：回滚到版本 {version}（当前版本 {current}）",
                action=f"{ADMIN_ROOT}{section.slug}/rollback",
                hidden=[("version", str(version)), ("based_on", str(current)), ("confirm", "1")],
                lines=lines, tables=tables, back=f"{ADMIN_ROOT}{section.slug}",
                blocked="与当前内容相同，无需回滚。" if version == current or lines == ["（内容相同）"] else "",
                confirm_label=f"确认回滚（保存为新版本 {current + 1}，历史不会被改写）"))
        based_on = int_field(form, "based_on")
        if based_on != current:
            raise FormError("version", f"配置在您预览之后被修改过（当前版本 {current}），请重新预览。", status=409)
        saved: Any = await module.rollback(request, session, version, based_on)
        return saved_redirect(section.slug, saved if saved is not None else "")

    return await _with_form_errors(request, session, module, form, act)


async def bare(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(ADMIN_ROOT)


def add_routes(app: web.Application) -> None:
    app.router.add_get(ADMIN_ROOT.rstrip("/"), bare)
    app.router.add_get(ADMIN_ROOT, index)
    app.router.add_get(ADMIN_ROOT + "{section}", show)
    app.router.add_post(ADMIN_ROOT + "{section}/preview", preview)
    app.router.add_post(ADMIN_ROOT + "{section}/save", save)
    app.router.add_get(ADMIN_ROOT + "{section}/diff", diff)
    app.router.add_post(ADMIN_ROOT + "{section}/rollback", rollback)
