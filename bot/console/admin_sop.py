"""The SOP page: the library (key, title, steps), one SOP edited as the Markdown the chat exports and
imports (`SOP 导出` / `SOP 导入`), or removed (`SOP 删除`). The preview parses the text with the
chat's parser and shows what changes in the library; saving runs `ImportSops` / `EditSop(remove)`
(audited "sop_changed"). Rollback, which the chat lacks, is `RollbackSops`.
"""

from __future__ import annotations

from collections.abc import Mapping

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
from core.errors import InvalidInput
from core.lifecycle.sop import Sop, SopLibrary, default_library, parse_any, to_markdown
from core.lifecycle.sop_handlers import SOP_KIND, EditSop, ImportSops
from core.sla.versioned_saves import RollbackSops

SECTION = SECTIONS["sop"]
MAX_TEXT = 50_000
NEW_TEMPLATE = "# 标题\n分类: 机械类\n故障类型: \n关键词: \n\n1. 第一步\n2. 第二步\n"


async def _library(request: web.Request) -> tuple[int, SopLibrary]:
    async with runtime_of(request).uow() as uow:
        latest = await uow.latest_config(SOP_KIND)
    return (0, default_library()) if latest is None else (latest[0], SopLibrary.from_dict(latest[1]))


def parsed(form: Mapping[str, str]) -> list[Sop]:
    text = form.get("markdown") or ""
    if len(text) > MAX_TEXT:
        raise FormError("markdown", f"内容太长（{len(text)} 字，最多 {MAX_TEXT}）。")
    try:
        return parse_any(text)
    except InvalidInput as error:
        raise FormError("markdown", error.user_message) from error


async def page(request: web.Request, session: StaffSession, *, error: FormError | None = None,
               form: Mapping[str, str] | None = None, status: int = 200) -> web.Response:
    runtime = runtime_of(request)
    version, library = await _library(request)
    async with runtime.uow() as uow:
        rows = await history(uow, SECTION, runtime.service.config.timezone)
    key = request.query.get("key", "")
    editing = library.get(key) if key else None
    markdown = (form or {}).get("markdown") or (to_markdown(editing) if editing else NEW_TEMPLATE)
    return render(request, session, "console/admin_sop.html", status=status, section=SECTION, version=version,
                  library=library, history=rows, error=error, editing=editing, key=key, markdown=markdown,
                  saved=request.query.get("saved"))


async def preview(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.Response:
    version, library = await _library(request)
    if (form.get("op") or "import") == "remove":
        key = (form.get("key") or "").strip()
        if library.get(key) is None:
            raise FormError("key", f"没有 SOP「{key[:40]}」。")
        after = library.without(key)
        title, tables = f"预览：删除 SOP「{key}」", []
    else:
        sops = parsed(form)
        after = library.upsert(sops)
        title = f"预览：导入 {len(sops)} 条 SOP"
        tables = [Table(f"{s.key}｜{s.title}", ["#", "步骤"], [[str(i), step.text] for i, step in
                                                             enumerate(s.steps, 1)]) for s in sops]
    hidden = [(k, form.get(k, "")) for k in ("op", "key", "markdown")] + [("based_on", str(version))]
    lines = SECTION.differ(library.to_dict(), after.to_dict())
    return render_preview(request, session, SECTION.title, Preview(
        title=f"{title}（当前版本 {version or '出厂默认'}）", action=f"{ADMIN_ROOT}sop/save", hidden=hidden,
        lines=lines, tables=tables, blocked="" if lines else "SOP 知识库没有变化，无需保存。",
        back=f"{ADMIN_ROOT}sop"))


async def save(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.StreamResponse:
    version, library = await _library(request)
    if int_field(form, "based_on") != version:
        raise FormError("based_on", "SOP 知识库在您预览之后被修改过，请重新预览。", status=409)
    if (form.get("op") or "import") == "remove":
        key = (form.get("key") or "").strip()
        saved = await run_as(request, session.person, EditSop(key, "remove"), field="key")
    else:
        sops = parsed(form)
        if library.upsert(sops) == library:
            raise FormError("markdown", "SOP 知识库没有变化。")
        saved = await run_as(request, session.person, ImportSops(form.get("markdown") or "", source="console"),
                             field="markdown")
    return saved_redirect("sop", saved)


async def rollback(request: web.Request, session: StaffSession, version: int, based_on: int) -> object:
    return await run_as(request, session.person, RollbackSops(version, based_on), field="version")
