"""Console exports (bot/console/exports.py): the ticket list as xlsx and CSV, the 报表 workbook.

The real app on SQLite (the export worker process) and PostgreSQL (the report thread), signed in the
way staff sign in (tests/console_support.py). The workbooks are opened with openpyxl.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlmodel import col

from bot.console.export_workbooks import LIST_HEADERS
from bot.web.app import build_app
from storage.tables import AuditEventRow, PersonRow, TicketRow
from tests.conftest import make_settings, runtime_of
from tests.console_support import sign_in

ROWS = 2600  # more than one batch (BATCH = 2000)


@pytest.fixture
async def client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(make_settings(sqlite_url, tmp_path)))) as test_client:
        yield test_client


def _ticket(number: str, **values: Any) -> TicketRow:
    base: dict[str, Any] = {"customer_id": "cust-x", "description": "举升机液压异响", "status": "triage",
                            "category": "机械类"}
    base.update(values)
    base.setdefault("updated_at", base["created_at"])
    return TicketRow(number=number, **base)


async def seed(client: TestClient) -> dict[str, TicketRow]:
    """A few tickets in three stores (S01, S02: 主管 李强; S03: 主管 陈静), one without a store."""
    now = runtime_of(client).clock.now().replace(microsecond=0)
    tickets = {t.number: t for t in [
        _ticket("GD-20261101-0001", store_id="S01", status="in_progress", assignee_id="tech-wang", priority="紧急",
                created_at=now - timedelta(days=3), first_response_at=now - timedelta(days=3) + timedelta(seconds=42),
                response_due=now - timedelta(days=3) + timedelta(minutes=30), resolution_due=now - timedelta(hours=1),
                description="=HYPERLINK(\"http://evil\")\x07 举升机"),
        _ticket("GD-20261101-0002", store_id="S02", status="closed", category="空调类", assignee_id="tech-liu",
                created_at=now - timedelta(days=2), closed_at=now - timedelta(days=1), subject="沪A12345"),
        _ticket("GD-20261101-0003", store_id="S03", status="pending_dispatch", category="电控类",
                created_at=now - timedelta(days=1), response_due=now + timedelta(minutes=5)),
        _ticket("GD-20261101-0004", store_id=None, status="triage", created_at=now - timedelta(hours=2),
                description="+1 电话回访"),
    ]}
    async with runtime_of(client).sessions() as session:
        session.add(PersonRow(id="cust-x", name="客户 王五", role="customer"))
        session.add_all(list(tickets.values()))
        await session.commit()
    return tickets


async def xlsx(client: TestClient, query: dict[str, str] | None = None, path: str = "/console/tickets.xlsx"
               ) -> openpyxl.Workbook:
    resp = await client.get(path, params=query or {})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    return openpyxl.load_workbook(io.BytesIO(await resp.read()))


async def csv_rows(client: TestClient, query: dict[str, str] | None = None) -> list[list[str]]:
    resp = await client.get("/console/tickets.csv", params=query or {})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/csv")
    body = await resp.read()
    assert body.startswith(b"\xef\xbb\xbf")  # Excel reads the Chinese as UTF-8 only with the BOM
    return list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))


def numbers(ws: Any) -> list[str]:
    return [row[0] for row in ws.iter_rows(min_row=2, values_only=True)]


async def test_xlsx_has_typed_cells_a_frozen_chinese_header_and_the_lists_order(app_client: TestClient) -> None:
    tickets = await seed(app_client)
    runtime = runtime_of(app_client)
    zone = runtime.service.config.timezone
    await sign_in(app_client, runtime, "admin")
    wb = await xlsx(app_client)
    assert wb.sheetnames == ["工单列表", "说明"]
    ws = wb["工单列表"]
    assert ws.freeze_panes == "A2"
    header = [c.value for c in ws[1]]
    assert header == list(LIST_HEADERS) and header[0] == "工单号"
    assert all(c.font.b for c in ws[1])
    assert numbers(ws) == ["GD-20261101-0004", "GD-20261101-0003", "GD-20261101-0002", "GD-20261101-0001"]
    row = {h: c for h, c in zip(header, next(r for r in ws.iter_rows(min_row=2) if r[0].value == "GD-20261101-0001"),
                                strict=True)}
    first = tickets["GD-20261101-0001"]
    assert row["报修时间"].is_date and row["报修时间"].value == first.created_at.astimezone(zone).replace(tzinfo=None)
    assert row["首次响应用时（秒）"].value == 42 and row["首次响应用时（秒）"].data_type == "n"
    assert row["状态"].value == "检修中" and row["SLA 状态"].value == "已超时" and row["门店"].value == "浦东张江店"
    assert row["技师"].value == "技师 王师傅" and row["客户"].value == "客户 王五" and row["优先级"].value == "紧急"
    # a description that looks like a formula stays text; characters XML cannot hold are dropped
    assert row["故障描述"].data_type == "s" and row["故障描述"].value == "=HYPERLINK(\"http://evil\") 举升机"
    closed = next(r for r in ws.iter_rows(min_row=2, values_only=True) if r[0] == "GD-20261101-0002")
    assert closed[header.index("处理时长（小时）")] == 24.0 and closed[header.index("报修对象")] == "沪A12345"
    assert closed[header.index("响应截止")] is None
    about = {r[0]: r[1] for r in wb["说明"].iter_rows(min_row=2, values_only=True)}
    assert about["导出人"] == "系统管理员 周敏" and about["工单数"] == 4
    assert [r[0] for r in (await csv_rows(app_client))[1:]] == numbers(ws)  # the CSV: the same list


async def test_csv_has_the_same_rows_with_a_bom_and_no_formulas(client: TestClient) -> None:
    await seed(client)
    await sign_in(client, runtime_of(client), "admin")
    rows = await csv_rows(client)
    assert rows[0] == list(LIST_HEADERS)
    assert [r[0] for r in rows[1:]] == numbers((await xlsx(client))["工单列表"])
    by_number = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert by_number["GD-20261101-0001"]["故障描述"].startswith("'=HYPERLINK")  # not run by a spreadsheet
    assert by_number["GD-20261101-0004"]["故障描述"] == "'+1 电话回访"
    assert by_number["GD-20261101-0001"]["首次响应用时（秒）"] == "42"
    assert len(by_number["GD-20261101-0002"]["报修时间"]) == len("2026-11-01 10:00:00")


async def test_filters_are_the_lists(client: TestClient) -> None:
    tickets = await seed(client)
    runtime = runtime_of(client)
    await sign_in(client, runtime, "admin")
    zone = runtime.service.config.timezone
    day = tickets["GD-20261101-0002"].created_at.astimezone(zone).date().isoformat()
    cases = [
        ({"status": "closed"}, ["GD-20261101-0002"]),
        ({"status": "待派单,检修中", "sort": "created_at"}, ["GD-20261101-0001", "GD-20261101-0003"]),
        ({"category": "空调类"}, ["GD-20261101-0002"]),
        ({"store": "S01,S03"}, ["GD-20261101-0003", "GD-20261101-0001"]),
        ({"from": day, "to": day}, ["GD-20261101-0002"]),
        ({"q": "沪a12345"}, ["GD-20261101-0002"]),
        ({"sla": "breached"}, ["GD-20261101-0001"]),
        ({"sla": "at_risk"}, ["GD-20261101-0003"]),
        ({"assignee": "tech-liu"}, ["GD-20261101-0002"]),
        ({"page": "2", "per": "1"}, ["GD-20261101-0004", "GD-20261101-0003", "GD-20261101-0002",
                                     "GD-20261101-0001"]),  # an export is the whole list, not one page
    ]
    for query, expected in cases:
        assert numbers((await xlsx(client, query))["工单列表"]) == expected, query
        assert [r[0] for r in (await csv_rows(client, query))[1:]] == expected, query


async def test_scope_a_supervisor_gets_only_their_stores(client: TestClient) -> None:
    await seed(client)
    runtime = runtime_of(client)
    await sign_in(client, runtime, "sup-chen")  # 主管 陈静: S03 only
    assert numbers((await xlsx(client))["工单列表"]) == ["GD-20261101-0003"]
    assert [r[0] for r in (await csv_rows(client))[1:]] == ["GD-20261101-0003"]
    for path in ("/console/tickets.xlsx", "/console/tickets.csv"):
        resp = await client.get(path, params={"store": "S01"})
        assert resp.status == 403
        assert "GD-20261101-0001" not in await resp.text()
    async with runtime.sessions() as session:
        refused = (await session.execute(select(AuditEventRow).where(col(AuditEventRow.kind) == "console_forbidden"))
                   ).scalars().all()
    assert len(refused) == 2 and all(e.actor_id == "sup-chen" and "S01" in e.payload["what"] for e in refused)
    client.session.cookie_jar.clear()
    await sign_in(client, runtime, "sup-li")  # S01 and the S02 of the technicians he supervises
    assert sorted(numbers((await xlsx(client))["工单列表"])) == ["GD-20261101-0001", "GD-20261101-0002"]


@pytest.mark.parametrize("path", ["/console/tickets.xlsx", "/console/tickets.csv", "/console/reports.xlsx",
                                  "/console/dashboards.xlsx", "/console/traceability.zip"])
@pytest.mark.parametrize(("query", "field"), [({"status": "finished"}, "status"), ({"from": "2026-02-30"}, "from"),
                                              ({"sla": "soon"}, "sla"), ({"store": "S01;drop"}, "store"),
                                              ({"sort": "secret"}, "sort")])
async def test_nonsense_filters_answer_400_naming_the_field(client: TestClient, path: str, query: dict[str, str],
                                                            field: str) -> None:
    await sign_in(client, runtime_of(client), "admin")
    resp = await client.get(path, params=query)
    assert resp.status == 400
    assert resp.headers["X-Filter-Field"] == field
    assert f"（{field}）" in await resp.text()


@pytest.mark.parametrize("path", ["/console/tickets.xlsx", "/console/tickets.csv", "/console/reports.xlsx",
                                  "/console/dashboards.xlsx", "/console/traceability.zip"])
async def test_without_a_session_every_export_redirects_to_the_sign_in_page(client: TestClient, path: str) -> None:
    await seed(client)
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console/signin"
    assert "GD-2026" not in await resp.text()
    client.session.cookie_jar.update_cookies({"tb_console": "forged"})
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 302


async def test_each_export_is_audited_with_who_and_what(client: TestClient) -> None:
    await seed(client)
    runtime = runtime_of(client)
    await sign_in(client, runtime, "qa-sun")
    await xlsx(client, {"store": "S02", "status": "closed"})
    await csv_rows(client, {"q": "举升机"})
    async with runtime.sessions() as session:
        events = (await session.execute(select(AuditEventRow).where(col(AuditEventRow.kind) == "console_export")
                                        .order_by(col(AuditEventRow.seq)))).scalars().all()
    assert [(e.actor_id, e.payload["what"]) for e in events] == [("qa-sun", "tickets.xlsx"), ("qa-sun", "tickets.csv")]
    assert events[0].payload["query"] == {"store": "S02", "status": "closed"} and events[0].payload["scope"] is None
    assert events[1].payload["query"] == {"q": "举升机"}


async def test_a_list_longer_than_a_batch_comes_whole_and_in_order(client: TestClient) -> None:
    runtime = runtime_of(client)
    now = runtime.clock.now()
    async with runtime.sessions() as session:
        session.add_all([_ticket(f"GD-20261102-{i:04d}", store_id="S01", created_at=now - timedelta(minutes=i % 500))
                         for i in range(ROWS)])
        await session.commit()
    # newest first, the number breaking ties (descending too)
    expected = sorted((f"GD-20261102-{i:04d}" for i in range(ROWS)), key=lambda n: (-(int(n[-4:]) % 500), n),
                      reverse=True)
    await sign_in(client, runtime, "admin")
    assert numbers((await xlsx(client))["工单列表"]) == expected
    assert [r[0] for r in (await csv_rows(client))[1:]] == expected
    ascending = numbers((await xlsx(client, {"sort": "priority"}))["工单列表"])
    assert ascending == sorted(expected)  # all 常规: the number decides


async def test_the_report_workbook_has_one_sheet_per_report(app_client: TestClient) -> None:
    await seed(app_client)
    runtime = runtime_of(app_client)
    await sign_in(app_client, runtime, "admin")
    wb = await xlsx(app_client, {}, "/console/reports.xlsx")
    assert wb.sheetnames == ["概览", "SLA达成率", "阻塞时长TOP10", "阻塞时长合计", "超时未结", "说明"]
    for name in wb.sheetnames:
        assert wb[name].freeze_panes == "A2"
    overview = {r[0]: r[1] for r in wb["概览"].iter_rows(min_row=2, values_only=True)}
    assert overview["报修工单数"] == 4  # reported in the last 7 days
    assert [c.value for c in wb["阻塞时长TOP10"][1]][:3] == ["排名", "工单号", "状态"]
    shares = [r[4] for r in wb["SLA达成率"].iter_rows(min_row=2)]
    assert all(c.value is None or c.number_format == "0.0%" for c in shares)
    # a store supervisor's report holds only their stores' tickets
    app_client.session.cookie_jar.clear()
    await sign_in(app_client, runtime, "sup-chen")
    scoped = await xlsx(app_client, {}, "/console/reports.xlsx")
    assert {r[0]: r[1] for r in scoped["概览"].iter_rows(min_row=2, values_only=True)}["报修工单数"] == 1
    too_long = await app_client.get("/console/reports.xlsx", params={"from": "2025-01-01", "to": "2026-06-01"})
    assert too_long.status == 400 and too_long.headers["X-Filter-Field"] == "to"


async def test_reports_are_for_supervisors_admins_and_quality(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "wh-zhao")  # 仓管: the queue and its export, not the reports
    assert (await client.get("/console/tickets.csv")).status == 200
    for path in ("/console/reports.xlsx", "/console/dashboards.xlsx", "/console/traceability.zip"):
        assert (await client.get(path)).status == 403


def test_export_times_are_naive_local_datetimes() -> None:
    from zoneinfo import ZoneInfo

    from bot.console.export_workbooks import local

    moment = datetime(2026, 12, 6, 16, 30, 5, 123, tzinfo=ZoneInfo("UTC"))
    assert local(moment, ZoneInfo("Asia/Shanghai")) == datetime(2026, 12, 7, 0, 30, 5)
    assert local(None, ZoneInfo("Asia/Shanghai")) is None


async def test_the_dashboards_workbook_has_one_sheet_per_chart(client: TestClient) -> None:
    from tests.test_lifecycle_support import report

    # reported through the chat: the dashboards count what the trail says (rows written behind the
    # service's back are not in the aggregates)
    for customer in ("cust-dash-1", "cust-dash-2"):
        await report(client, customer, "空调不制冷，出风口是热风")
    runtime = runtime_of(client)
    await sign_in(client, runtime, "admin")
    for _ in range(120):  # the aggregates are built in the background after start-up: 503 until then
        resp = await client.get("/console/dashboards.xlsx")
        if resp.status != 503:
            break
        assert "看板汇总正在生成" in await resp.text() and resp.headers["Retry-After"]
        await asyncio.sleep(0.5)
    assert resp.status == 200, await resp.text()
    wb = openpyxl.load_workbook(io.BytesIO(await resp.read()))
    assert wb.sheetnames == ["首响", "每日指标", "SLA达成率", "积压", "阻塞时长TOP10", "技师", "门店", "照片与评分",
                             "说明"]
    days = list(wb["每日指标"].iter_rows(min_row=2))
    assert len(days) == 30 and all(row[0].is_date for row in days)
    assert sum(row[1].value or 0 for row in days) == 2  # reported in the last 30 days
    assert all(ws.freeze_panes == "A2" for ws in wb.worksheets)
    two_stores = await client.get("/console/dashboards.xlsx", params={"store": "S01,S02"})
    assert two_stores.status == 400 and two_stores.headers["X-Filter-Field"] == "store"
    client.session.cookie_jar.clear()
    await sign_in(client, runtime, "sup-chen")
    assert (await client.get("/console/dashboards.xlsx", params={"store": "S01"})).status == 403
