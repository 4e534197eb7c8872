"""Admin pages (/console/admin/): each renders the config in use; edit → preview (dry run) → confirm saves
one new version through the chat's commands, visible in the history with its diff; rollback; bad input
is a 400 naming the field with nothing saved; CSRF-less posts and non-admins are refused.

The real app on a real database, signed in through a one-time link (tests/console_support.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from bot.console.admin_sla import cell_key
from bot.rules.rulebook import RULES_KIND
from core.commands import ReportFault
from core.dispatch.offers import POLICY_KIND
from core.lifecycle.common import WORKFLOW_KIND
from core.lifecycle.sop_handlers import SOP_KIND
from core.model import Role
from core.sla.admin import SetSlaCell
from core.sla.calendar import TimeBand
from core.sla.matrix import Impact, Priority, SlaMatrix, explain
from core.sla.stored_config import CALENDAR_KIND, SLA_KIND, load_calendar
from tests.test_console_admin_support import (
    audit_events,
    console,
    csrf,
    form_error,
    history,
    inputs,
    list_items,
    selected,
)

ALL_KINDS = {"rules": RULES_KIND, "sla": SLA_KIND, "template": WORKFLOW_KIND, "sop": SOP_KIND,
             "dispatch": POLICY_KIND, "holidays": CALENDAR_KIND}


def sla_form(page: str) -> dict[str, str]:
    """The SLA page's form as the browser would submit it."""
    return {**inputs(page, "sla-form"), **{k: v for k, v in selected(page).items() if k.endswith(".clock")}}


async def test_every_admin_page_renders_the_config_in_use(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path) as (client, _runtime):
        index = await (await client.get("/console/admin/")).text()
        for slug in ALL_KINDS:
            assert f'href="/console/admin/{slug}"' in index

        sla = await client.get("/console/admin/sla")
        page = await sla.text()
        assert sla.status == 200
        form = sla_form(page)
        default = SlaMatrix.default()
        cells = [k for k in form if k.endswith(".response")]
        assert len(cells) == 27  # priority × impact × band
        for cell in default:
            key = cell_key(cell.priority, cell.impact, cell.band)
            assert float(form[f"{key}.response"]) == cell.response.total_seconds() / 60
            assert float(form[f"{key}.resolution"]) == cell.resolution.total_seconds() / 60
            assert form[f"{key}.clock"] == cell.clock.value
        assert "出厂默认" in page

        rules = await (await client.get("/console/admin/rules")).text()
        assert "机械类" in rules and "异响" in rules and "电控类" in rules and "黑屏" in rules

        dispatch = inputs(await (await client.get("/console/admin/dispatch")).text(), "dispatch-form")
        assert {k: dispatch[f"weight.{k}"] for k in ("qualification", "distance", "load", "rating")} == {
            "qualification": "40", "distance": "30", "load": "20", "rating": "10"}

        holidays = await (await client.get("/console/admin/holidays")).text()
        assert "2026-10-01" in holidays and "国庆节" in holidays  # the statutory calendar in use
        assert "调休上班" in holidays and "2026-10-10" in holidays  # a 调休 make-up workday of 2026

        template = await (await client.get("/console/admin/template")).text()
        assert "完工照片" in template and "维修服务" in template

        sop = await (await client.get("/console/admin/sop")).text()
        assert 'id="sop-list"' in sop and "机械类" in sop


async def test_sla_edit_preview_confirm_history_diff_and_rollback(database_url: str, tmp_path: Path) -> None:
    async with console(database_url, tmp_path) as (client, runtime):
        page = await (await client.get("/console/admin/sla")).text()
        form = sla_form(page)
        key = cell_key(Priority.URGENT, Impact.PLANT, TimeBand.WORKING)
        before = form[f"{key}.response"]
        form[f"{key}.response"] = "10"
        form["start"] = "2026-12-31T17:50"  # the evening before New Year's Day

        preview = await client.post("/console/admin/sla/preview", data=form)
        text = await preview.text()
        assert preview.status == 200
        assert list_items(text, "preview-lines") == [f"紧急×全厂×工作时间：{_cell(before, form, key)} → "
                                                      f"{_cell('10', form, key)}"]
        # The business-time preview: the deadlines a report at that moment gets, from the real calendar.
        async with runtime.uow() as uow:
            calendar = await load_calendar(uow, runtime.service.config.timezone, runtime.service.config.sla)
        start = datetime(2026, 12, 31, 17, 50, tzinfo=calendar.zone)
        expected = explain("紧急", "全厂", start, calendar, SlaMatrix.default())
        due = datetime.fromisoformat(expected["resolution_due"])
        assert f"{due:%m-%d %H:%M}" in text
        assert await history(runtime, SLA_KIND) == []  # a preview stores nothing

        confirm = inputs(text, "confirm-form")
        saved = await client.post("/console/admin/sla/save", data=confirm, allow_redirects=False)
        assert saved.status == 303 and saved.headers["Location"] == "/console/admin/sla?saved=1"
        rows = await history(runtime, SLA_KIND)
        assert [r["version"] for r in rows] == [1] and rows[0]["actor_id"] == "admin"
        events = await audit_events(runtime, "config_changed")
        assert events[-1].actor_id == "admin" and events[-1].payload["kind"] == SLA_KIND
        assert events[-1].payload["cells"][0]["cell"] == "紧急×全厂×工作时间"
        async with runtime.uow() as uow:
            _version, payload = await uow.latest_config(SLA_KIND) or (0, {})
        assert SlaMatrix.from_dict(payload).cell("紧急", "全厂", "工作时间").response.total_seconds() == 600

        page = await (await client.get("/console/admin/sla?saved=1")).text()
        assert "v1（当前）" in page and "系统管理员" in page
        diff = await (await client.get("/console/admin/sla/diff?from=0&to=1")).text()
        assert list_items(diff, "diff-lines") == [f"紧急×全厂×工作时间：{_cell(before, form, key)} → "
                                                  f"{_cell('10', form, key)}"]

        # Rollback: a preview of the rollback, then confirm; history is appended, never rewritten.
        rb = await client.post("/console/admin/sla/rollback", data={"csrf_token": csrf(page), "version": "0"})
        rb_text = await rb.text()
        assert rb.status == 200 and len(list_items(rb_text, "preview-lines")) == 1
        assert "业务时间试算" in rb_text and "修改后解决截止" in rb_text  # deadlines now, before and after it
        assert [r["version"] for r in await history(runtime, SLA_KIND)] == [1]
        done = await client.post("/console/admin/sla/rollback", data=inputs(rb_text, "confirm-form"),
                                 allow_redirects=False)
        assert done.status == 303
        rows = await history(runtime, SLA_KIND)
        assert [r["version"] for r in rows] == [2, 1] and rows[0]["note"] == "回滚到版本 0"
        async with runtime.uow() as uow:
            latest = await uow.latest_config(SLA_KIND)
        assert latest is not None and SlaMatrix.from_dict(latest[1]) == SlaMatrix.default()


def _cell(response: str, form: dict[str, str], key: str) -> str:
    from core.sla.admin import cell_text
    from core.sla.matrix import SlaCell

    cell = SlaCell.from_dict({"priority": "紧急", "impact": "全厂", "band": "工作时间", "clock": form[f"{key}.clock"],
                              "response_minutes": float(response),
                              "resolution_minutes": float(form[f"{key}.resolution"])})
    return cell_text(cell)


async def _report(runtime: object, text: str) -> str:
    async with runtime.uow() as uow:  # type: ignore[attr-defined]
        customer = await uow.get_person("cust-demo")
    result = await runtime.service.handle(ReportFault(text, new_problem=True), customer)  # type: ignore[attr-defined]
    number = getattr(result, "number", None) or getattr(getattr(result, "ticket", None), "number", None)
    if number is None:
        async with runtime.uow() as uow:  # type: ignore[attr-defined]
            number = (await uow.list_tickets(limit=1))[0].number
    return str(number)


async def test_rule_change_dry_run_against_recent_tickets_then_confirm_installs_it(sqlite_url: str,
                                                                                   tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path) as (client, runtime):
        noisy = await _report(runtime, "刹车异响，开起来咯噔咯噔")
        dark = await _report(runtime, "屏幕黑屏不亮")
        page = await (await client.get("/console/admin/rules")).text()
        # 异响 also in 电控类 (precedence 1 beats 机械类's 2): the brake ticket would move.
        preview = await client.post("/console/admin/rules/preview", data={
            "csrf_token": csrf(page), "op": "add", "category": "电控类", "keywords": "异响"})
        text = await preview.text()
        assert preview.status == 200
        assert "「电控类」添加关键词：异响" in list_items(text, "preview-lines")
        assert "张的分类会变化" in text
        table = text[text.index('class="plain preview-table'):]
        assert noisy in table and "机械类" in table and dark not in table
        sampled = await client.post("/console/admin/rules/preview", data={
            "csrf_token": csrf(page), "op": "add", "category": "电控类", "keywords": "异响", "sample": "门有异响"})
        sample = await sampled.text()
        assert "试分类：门有异响" in sample
        row = re.search(r"<td>分类</td><td[^>]*>(.*?)</td><td[^>]*>(.*?)</td>", sample)
        assert row is not None and row.groups() == ("机械类", "电控类")
        assert await history(runtime, RULES_KIND) == []

        saved = await client.post("/console/admin/rules/save", data=inputs(text, "confirm-form"),
                                  allow_redirects=False)
        assert saved.status == 303
        assert [r["version"] for r in await history(runtime, RULES_KIND)] == [1]
        assert runtime.rulebook.version == 1  # this process classifies with the new rules at once
        assert runtime.rulebook.classify("刹车异响").category == "电控类"
        changed = await audit_events(runtime, "rules_changed")
        assert changed[-1].actor_id == "admin" and changed[-1].payload["version"] == 1


async def test_high_risk_rule_change_is_confirmed_by_the_confirm_button(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path) as (client, runtime):
        page = await (await client.get("/console/admin/rules")).text()
        preview = await client.post("/console/admin/rules/preview", data={
            "csrf_token": csrf(page), "op": "remove", "category": "机械类", "keywords": "异响 漏油 漏水"})
        text = await preview.text()
        assert "高风险修改" in text and "确认高风险修改并保存" in text
        saved = await client.post("/console/admin/rules/save", data=inputs(text, "confirm-form"),
                                  allow_redirects=False)
        assert saved.status == 303
        rows = await history(runtime, RULES_KIND)
        assert rows[0]["version"] == 1 and "已确认" in rows[0]["note"]
        assert [e.payload.get("confirmed") for e in await audit_events(runtime, "rules_changed")] == [True]
        assert len(await audit_events(runtime, "rules_change_pending")) == 1  # the chat's two steps, both audited

        # Rollback to v0 puts three keywords back: not high-risk, saved as v2.
        await _report(runtime, "发动机漏油")  # 漏油 is gone from 机械类 in v1: the rollback would classify it again
        rb = await client.post("/console/admin/rules/rollback", data={"csrf_token": csrf(page), "version": "0"})
        rb_text = await rb.text()
        assert "张的分类会变化" in rb_text and "发动机漏油" in rb_text
        done = await client.post("/console/admin/rules/rollback", data=inputs(rb_text, "confirm-form"),
                                 allow_redirects=False)
        assert done.status == 303
        assert [r["version"] for r in await history(runtime, RULES_KIND)] == [2, 1]
        assert runtime.rulebook.version == 2 and runtime.rulebook.classify("刹车异响").category == "机械类"


async def test_dispatch_weights_template_sop_and_holidays_save_and_roll_back(database_url: str,
                                                                            tmp_path: Path) -> None:
    edits = {
        "dispatch": {"weight.qualification": "50", "weight.distance": "20", "weight.load": "20",
                     "weight.rating": "10", "offer_timeout": "15"},
        "template": {"op": "edit", "opt.完工照片": "5"},
        "sop": {"op": "import", "markdown": "# 门禁异响\n分类: 机械类\n故障类型: 门禁异响\n\n1. 断电\n2. 检查合页\n"},
        "holidays": {"op": "set", "day": "2027-02-05", "working": "0", "note": "春节"},
    }
    expected = {"dispatch": "权重 资质匹配：40% → 50%", "template": "完工照片：3 → 5",
                "sop": "新增 SOP「机械类/门禁异响」（2 步）", "holidays": "新增覆盖：2027-02-05 休息 春节"}
    async with console(database_url, tmp_path) as (client, runtime):
        token = csrf(await (await client.get("/console/admin/")).text())
        for slug, data in edits.items():
            kind = ALL_KINDS[slug]
            preview = await client.post(f"/console/admin/{slug}/preview", data={"csrf_token": token, **data})
            text = await preview.text()
            assert preview.status == 200, (slug, form_error(text))
            assert expected[slug] in list_items(text, "preview-lines")
            assert await history(runtime, kind) == [], slug
            saved = await client.post(f"/console/admin/{slug}/save", data=inputs(text, "confirm-form"),
                                      allow_redirects=False)
            assert saved.status == 303, (slug, form_error(await saved.text()))
            rows = await history(runtime, kind)
            assert [r["actor_id"] for r in rows] == ["admin"], slug
            page = await (await client.get(f"/console/admin/{slug}")).text()
            assert f"v{rows[0]['version']}（当前）" in page
            diff = await (await client.get(f"/console/admin/{slug}/diff?from=0&to={rows[0]['version']}")).text()
            assert expected[slug] in list_items(diff, "diff-lines"), slug

            rb = await client.post(f"/console/admin/{slug}/rollback", data={"csrf_token": token, "version": "0"})
            done = await client.post(f"/console/admin/{slug}/rollback", data=inputs(await rb.text(), "confirm-form"),
                                     allow_redirects=False)
            assert done.status == 303, (slug, form_error(await done.text()))
            after = await history(runtime, kind)
            assert len(after) == len(rows) + 1, slug
            async with runtime.uow() as uow:
                latest = await uow.latest_config(kind)
            from bot.console.admin_versions import SECTIONS

            assert latest is not None and SECTIONS[slug].diff(SECTIONS[slug].default(), latest[1]) == ["（内容相同）"]
        assert runtime.service.config.workflow.options.get("completion_photos", 3) == 3  # rolled back and installed


BAD_INPUT = [
    ("rules", {"op": "add", "category": "不存在的分类", "keywords": "咔咔"}, "category"),
    ("rules", {"op": "add", "category": "机械类", "keywords": ""}, "keywords"),
    ("rules", {"op": "add", "category": "机械类", "keywords": "超" * 21}, "keywords"),
    ("rules", {"op": "add_category", "category": "机械类"}, "category"),
    ("rules", {"op": "rename", "category": "机械类", "new_name": "电控类"}, "new_name"),
    ("dispatch", {"weight.qualification": "50", "weight.distance": "30", "weight.load": "20", "weight.rating": "10",
                  "offer_timeout": "15"}, "weights"),
    ("dispatch", {"weight.qualification": "40", "weight.distance": "三十", "weight.load": "20",
                  "weight.rating": "10", "offer_timeout": "15"}, "weight.distance"),
    ("template", {"op": "edit", "opt.完工照片": "99"}, "opt.完工照片"),
    ("template", {"op": "edit", "guards.complete": "photos,teleport"}, "guards.complete"),
    ("sop", {"op": "import", "markdown": "没有标题的 SOP"}, "markdown"),
    ("sop", {"op": "import", "markdown": "# 只有标题\n分类: 机械类\n"}, "markdown"),
    ("holidays", {"op": "set", "day": "2027-02-30", "working": "0"}, "day"),
    ("holidays", {"op": "remove", "day": "2027-02-05"}, "day"),
    ("holidays", {"op": "set", "day": "2040-01-01", "working": "0"}, "day"),
    ("holidays", {"op": "confirm_year", "year": "1999"}, "year"),
    ("holidays", {"op": "set", "day": "2027-02-05", "working": "maybe"}, "working"),
]


@pytest.mark.parametrize(("slug", "data", "field"), BAD_INPUT, ids=lambda v: v if isinstance(v, str) else "")
async def test_bad_input_is_a_400_naming_the_field_and_saves_nothing(sqlite_url: str, tmp_path: Path, slug: str,
                                                                     data: dict[str, str], field: str) -> None:
    async with console(sqlite_url, tmp_path) as (client, runtime):
        token = csrf(await (await client.get(f"/console/admin/{slug}")).text())
        for step in ("preview", "save"):  # a hand-made POST straight to save is checked the same way
            resp = await client.post(f"/console/admin/{slug}/{step}", data={"csrf_token": token, "based_on": "0",
                                                                             **data})
            text = await resp.text()
            assert resp.status == 400, (step, text[:500])
            error = form_error(text)
            assert error is not None and error[0] == field, (step, error)
            assert f'name="{field}"' in text or field in {"weights"}  # the form is shown again
        assert await history(runtime, ALL_KINDS[slug]) == []


@pytest.mark.parametrize(("name", "value", "field"), [
    ("urgent.plant.working.response", "十分钟", "urgent.plant.working.response"),
    ("normal.user.holiday.resolution", "-5", "normal.user.holiday.resolution"),
    ("consult.department.off_hours.clock", "sometimes", "consult.department.off_hours.clock"),
    ("urgent.user.working.response", "100000", "urgent.user.working.response"),  # beyond 60 days
    ("urgent.user.working.response", "9999", "urgent.user.working.response"),  # longer than its resolution
])
async def test_bad_sla_cell_is_a_400_naming_the_cell(sqlite_url: str, tmp_path: Path, name: str, value: str,
                                                     field: str) -> None:
    async with console(sqlite_url, tmp_path) as (client, runtime):
        page = await (await client.get("/console/admin/sla")).text()
        form = {**sla_form(page), name: value, "start": "明天"}  # a bad start time too: the cell is named first
        for step in ("preview", "save"):
            resp = await client.post(f"/console/admin/sla/{step}", data={**form, "based_on": "0"})
            text = await resp.text()
            assert resp.status == 400
            error = form_error(text)
            assert error is not None and error[0] == field, error
            if not name.endswith(".clock"):  # what was typed is kept for correction
                assert f'name="{name}" value="{value}"' in text
            assert 'aria-invalid="true"' in text
        assert await history(runtime, SLA_KIND) == []


async def test_a_bad_preview_start_time_and_an_unchanged_matrix_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path) as (client, runtime):
        form = sla_form(await (await client.get("/console/admin/sla")).text())
        resp = await client.post("/console/admin/sla/preview", data={**form, "start": "下周一早上"})
        assert resp.status == 400 and (form_error(await resp.text()) or ("",))[0] == "start"
        unchanged = await client.post("/console/admin/sla/preview", data=form)
        text = await unchanged.text()
        assert unchanged.status == 200 and "没有修改任何单元格" in text and 'id="confirm-form"' not in text
        resp = await client.post("/console/admin/sla/save", data={**form, "based_on": "0"})
        assert resp.status == 400 and (form_error(await resp.text()) or ("",))[0] == "matrix"
        assert await history(runtime, SLA_KIND) == []


async def test_posts_without_the_csrf_token_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path) as (client, runtime):
        page = await (await client.get("/console/admin/sla")).text()
        form = sla_form(page)
        form.pop("csrf_token")
        form[cell_key(Priority.URGENT, Impact.PLANT, TimeBand.WORKING) + ".response"] = "10"
        for path, data in (("/console/admin/sla/preview", form), ("/console/admin/sla/save", {**form, "based_on": "0"}),
                           ("/console/admin/sla/rollback", {"version": "0", "confirm": "1", "based_on": "0"}),
                           ("/console/admin/dispatch/save", {"weight.qualification": "100", "weight.distance": "0",
                                                             "weight.load": "0", "weight.rating": "0",
                                                             "offer_timeout": "15", "based_on": "0"})):
            resp = await client.post(path, data=data)
            assert resp.status == 403, path
            forged = await client.post(path, data={**data, "csrf_token": "forged"})
            assert forged.status == 403, path
        assert await history(runtime, SLA_KIND) == [] and await history(runtime, POLICY_KIND) == []


@pytest.mark.parametrize("person_id", ["sup-li", "qa-sun"])
async def test_non_admins_get_an_audited_403(sqlite_url: str, tmp_path: Path, person_id: str) -> None:
    async with console(sqlite_url, tmp_path, person_id) as (client, runtime):
        async with runtime.uow() as uow:
            person = await uow.get_person(person_id)
        assert person is not None and person.role is not Role.ADMIN
        for path in ("/console/admin/", "/console/admin/sla", "/console/admin/rules/diff?from=0&to=0"):
            resp = await client.get(path)
            assert resp.status == 403, path
            assert "机械类" not in await resp.text()
        resp = await client.post("/console/admin/sla/save", data={"based_on": "0"})
        assert resp.status == 403
        refused = await audit_events(runtime, "console_forbidden")
        assert [e.payload["path"] for e in refused if e.actor_id == person_id][:2] == ["/console/admin/",
                                                                                       "/console/admin/sla"]
        assert await history(runtime, SLA_KIND) == []


async def test_a_save_after_someone_else_changed_the_config_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path) as (client, runtime):
        page = await (await client.get("/console/admin/sla")).text()
        form = sla_form(page)
        form[cell_key(Priority.URGENT, Impact.PLANT, TimeBand.WORKING) + ".response"] = "10"
        preview = await (await client.post("/console/admin/sla/preview", data=form)).text()
        async with runtime.uow() as uow:
            admin = await uow.get_person("admin")
        assert admin is not None
        await runtime.service.handle(SetSlaCell("常规", "部门", "工作时间", response_minutes=45), admin)  # the chat
        resp = await client.post("/console/admin/sla/save", data=inputs(preview, "confirm-form"))
        assert resp.status == 409
        error = form_error(await resp.text())
        assert error is not None and "预览之后" in error[1]
        assert [r["version"] for r in await history(runtime, SLA_KIND)] == [1]  # only the chat's change
        page = await (await client.get("/console/admin/sla")).text()  # the chat's version is the page's history
        assert "v1（当前）" in page and "修改 常规×部门×工作时间" in page
        assert inputs(page, "sla-form")[cell_key(Priority.NORMAL, Impact.DEPARTMENT, TimeBand.WORKING) + ".response"] \
            == "45"


async def test_sample_ticket_dry_runs_for_dispatch_and_template(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path) as (client, runtime):
        number = await _report(runtime, "刹车异响，开起来咯噔咯噔")
        page = await (await client.get("/console/admin/dispatch")).text()
        form = {**inputs(page, "dispatch-form"), "weight.qualification": "10", "weight.distance": "60",
                "sample": number}
        text = await (await client.post("/console/admin/dispatch/preview", data=form)).text()
        assert f"试算工单 {number}" in text and "修改后名次" in text
        assert "技师" in text[text.index(f"试算工单 {number}"):]  # the demo's technicians are ranked
        missing = await client.post("/console/admin/dispatch/preview", data={**form, "sample": "GD-NOPE"})
        assert missing.status == 400 and (form_error(await missing.text()) or ("",))[0] == "sample"

        template = await (await client.get("/console/admin/template")).text()
        preview = await client.post("/console/admin/template/preview", data={
            "csrf_token": csrf(template), "op": "edit", "opt.完工照片": "1", "sample": number})
        text = await preview.text()
        assert preview.status == 200
        assert "高风险：完工照片从 3 张减为 1 张" in text  # the chat would ask 确认 for this
        assert f"试运行（修改后）：{number}" in text and f"试运行（当前）：{number}" in text
        assert "照片 ≥1" in text and "照片 ≥3" in text
        saved = await client.post("/console/admin/template/save", data=inputs(text, "confirm-form"),
                                  allow_redirects=False)
        assert saved.status == 303
        rows = await history(runtime, WORKFLOW_KIND)
        assert rows[0]["note"].endswith("（已确认高风险）")
        assert runtime.service.config.workflow.options["completion_photos"] == 1


async def test_unknown_sections_and_the_bare_prefix(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path) as (client, _runtime):
        assert (await client.get("/console/admin/nothing")).status == 404
        bare = await client.get("/console/admin", allow_redirects=False)
        assert bare.status == 302 and bare.headers["Location"] == "/console/admin/"
        assert (await client.get("/console/admin/sla/diff?from=0&to=99")).status == 404
        assert (await client.get("/console/admin/sla/diff?from=x&to=1")).status == 400


async def test_admin_pages_need_a_session(sqlite_url: str, tmp_path: Path) -> None:
    async with console(sqlite_url, tmp_path) as (client, _runtime):
        client.session.cookie_jar.clear()
        for path in ("/console/admin/", "/console/admin/sla", "/console/ops/"):
            resp = await client.get(path, allow_redirects=False)
            assert resp.status == 302 and resp.headers["Location"] == "/console/signin"
        resp = await client.post("/console/admin/sla/save", data={}, allow_redirects=False)
        assert resp.status == 302


def test_cell_keys_are_unique() -> None:
    keys = {cell_key(p, i, b) for p in Priority for i in Impact for b in TimeBand}
    assert len(keys) == 27 and all(re.fullmatch(r"[a-z_]+\.[a-z_]+\.[a-z_]+", k) for k in keys)
