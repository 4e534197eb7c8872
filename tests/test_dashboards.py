"""The dashboards page /console/dashboards (issue 22): the figures from the report aggregates, the
staff's store scope, filters, bad input — on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.jobs.report_aggregates import ReportAggregator
from core.clock import FixedClock
from storage.tables import AuditEventRow
from tests.console_support import sign_in
from tests.sla_support import assign_and_accept, at, fixed_clock_app, force, report, runtime


def kpi(page: str, label: str) -> str:
    found = re.search(rf'<span class="kpi-label">{label}</span><strong class="kpi-value">([^<]*)</strong>', page)
    assert found, page[:3000]
    return found.group(1)


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    clock = FixedClock(at(2026, 11, 18, 9, 0))
    async with fixed_clock_app(database_url, tmp_path, clock) as test_client:
        rt = runtime(test_client)
        first = await report(test_client, "cust-d1", "中控黑屏")
        await force(rt, first, store_id="S01")
        await assign_and_accept(rt, first, "tech-wang")
        second = await report(test_client, "cust-d2", "空调不制冷")
        await force(rt, second, store_id="S03")
        await assign_and_accept(rt, second, "tech-xu")
        third = await report(test_client, "cust-d3", "门禁坏了")  # S01, not folded yet: the live part
        await force(rt, third, store_id="S01")
        await ReportAggregator(rt).catch_up()
        await assign_and_accept(rt, third, "tech-zhang")
        yield test_client


async def test_admin_sees_every_store_with_charts_and_tables(client: TestClient) -> None:
    await sign_in(client, runtime(client), "admin")
    resp = await client.get("/console/dashboards")
    assert resp.status == 200
    page = await resp.text()
    assert kpi(page, "报修") == "3"
    assert kpi(page, "当前积压") == "3"
    for chart in ("waits", "trend", "sla", "backlog", "blocked", "technicians", "stores", "photos"):
        assert f'data-chart="{chart}"' in page
    assert page.count("<table>") >= 8 and page.count('class="table-view"') == 8
    assert "浦东张江店" in page and "杭州滨江店" in page
    assert 'id="dash-charts"' in page and "/static/vendor/echarts/echarts.min.js" in page
    assert "技师 王师傅" in page and "已接单" in page
    only_s03 = await (await client.get("/console/dashboards", params={"store": "S03"})).text()
    assert kpi(only_s03, "报修") == "1" and "浦东张江店</th>" not in only_s03
    by_tech = await (await client.get("/console/dashboards", params={"technician": "tech-zhang"})).text()
    assert kpi(by_tech, "报修") == "1"  # the live part (accepted after the fold) is counted


async def test_a_supervisor_sees_their_stores_only(client: TestClient) -> None:
    rt = runtime(client)
    await sign_in(client, rt, "sup-chen")  # S03
    page = await (await client.get("/console/dashboards")).text()
    assert kpi(page, "报修") == "1" and "杭州滨江店" in page and "浦东张江店" not in page
    resp = await client.get("/console/dashboards", params={"store": "S01"})
    assert resp.status == 403
    async with rt.sessions() as s:
        kinds = [e.kind for e in (await s.execute(select(AuditEventRow).where(
            AuditEventRow.kind == "console_forbidden"))).scalars()]
    assert kinds == ["console_forbidden"]


async def test_bad_filters_answer_400_naming_the_field(client: TestClient) -> None:
    await sign_in(client, runtime(client), "admin")
    for params, field in (({"from": "yesterday"}, "开始日期"), ({"to": "2026-13-01"}, "结束日期"),
                          ({"from": "2026-11-10", "to": "2026-11-01"}, "开始日期"),
                          ({"from": "2024-01-01", "to": "2026-11-01"}, "开始日期"),
                          ({"category": "x" * 65}, "类别")):
        resp = await client.get("/console/dashboards", params=params)
        assert resp.status == 400, params
        assert f"筛选条件有误（{field}）" in await resp.text()


async def test_without_a_session_the_page_redirects(client: TestClient) -> None:
    resp = await client.get("/console/dashboards", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console/signin"
