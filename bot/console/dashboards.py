"""The dashboards page `/console/dashboards` (issue 22; docs/dashboards.md).

Per period (`from`, `to`: local days, both included; default the last 30 days), store, category and
technician: the seeds' three metrics (first response, 100 % traceability, first-time fix) and SLA
compliance per priority, closure time, backlog and its age, the blocked-duration TOP10, reopen rate,
technicians' load and rating, the stores' heat map and photos per ticket against the rating. Figures
come from the report aggregates (storage/report_dashboard.py), read off the event loop; charts are
ECharts (vendored) options built here, each with a table beside it for screen readers and for reading
without JavaScript.

Supervisors see their stores only (a store outside them: an audited 403); admins and quality staff all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlmodel import col

from bot.chat.report_reads import report_reads
from bot.console.auth import forbidden, page_context, runtime_of, staff
from bot.console.ticket_query import FilterError
from core.model import Role
from storage.report_aggregates import Filters
from storage.report_dashboard import DashboardFigures, dashboard_job
from storage.tables import PersonRow, StoreRow

ROLES = (Role.SUPERVISOR, Role.ADMIN, Role.QUALITY)
DEFAULT_DAYS = 30
MAX_DAYS = 366
FIELD_LABELS = {"from": "开始日期", "to": "结束日期", "store": "门店", "category": "类别", "technician": "技师"}


@dataclass(frozen=True, slots=True)
class DashboardQuery:
    first: date
    last: date
    store: str | None
    category: str | None
    technician: str | None

    @classmethod
    def parse(cls, query: Any, today: date) -> DashboardQuery:
        def day(name: str, default: date) -> date:
            text = (query.get(name) or "").strip()
            if not text:
                return default
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise FilterError(name, f"「{text[:20]}」不是日期（应为 2026-11-01 这样的格式）") from None

        last = day("to", today)
        first = day("from", last - timedelta(days=DEFAULT_DAYS - 1))
        if first > last:
            raise FilterError("from", f"开始日期 {first} 晚于结束日期 {last}")
        if (last - first).days + 1 > MAX_DAYS:
            raise FilterError("from", f"时间段最长 {MAX_DAYS} 天")

        def word(name: str) -> str | None:
            text = (query.get(name) or "").strip()
            if len(text) > 64:
                raise FilterError(name, "太长了（最多 64 个字符）")
            return text or None

        return cls(first, last, word("store"), word("category"), word("technician"))

    def params(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(), "store": self.store or "",
                "category": self.category or "", "technician": self.technician or ""}


async def dashboards_page(request: web.Request) -> web.StreamResponse:
    session = await staff(request, *ROLES)
    runtime = runtime_of(request)
    zone = runtime.service.config.timezone
    now = runtime.clock.now()
    try:
        q = DashboardQuery.parse(request.query, now.astimezone(zone).date())
    except FilterError as error:
        context = page_context(request, session, error=error.message, error_field=FIELD_LABELS.get(error.field,
                                                                                                 error.field),
                               field=error.field, figures=None, q=None, stores=[], technicians=[], charts={})
        response = aiohttp_jinja2.render_template("console/dashboards.html", request, context)
        response.set_status(400)
        return response
    if q.store is not None and not session.can_see_store(q.store):
        raise await forbidden(request, session, f"门店 {q.store} 的看板")
    stores = frozenset({q.store}) if q.store else session.store_ids
    filters = Filters(store_ids=stores, category=q.category, technician=q.technician)
    figures: DashboardFigures = await report_reads(runtime).run(dashboard_job, q.first, q.last, now, zone.key, filters)
    store_options, technician_options = await _options(runtime, session.store_ids)
    context = page_context(request, session, q=q, figures=figures, stores=store_options,
                           technicians=technician_options, charts=charts(figures) if figures.ready else {},
                           error=None, kpis=kpis(figures) if figures.ready else [])
    return aiohttp_jinja2.render_template("console/dashboards.html", request, context)


async def _options(runtime: Any, scope: frozenset[str] | None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    async with runtime.engine.connect() as conn:
        statement = select(col(StoreRow.id), col(StoreRow.name)).order_by(col(StoreRow.id))
        if scope is not None:
            statement = statement.where(col(StoreRow.id).in_(sorted(scope)))
        stores = [(r[0], r[1]) for r in await conn.execute(statement)]
        people = select(col(PersonRow.id), col(PersonRow.name)).where(col(PersonRow.role) == Role.TECHNICIAN.value,
                                                                       col(PersonRow.active).is_(True))
        if scope is not None:
            people = people.where(col(PersonRow.store_id).in_(sorted(scope)))
        technicians = [(r[0], r[1]) for r in await conn.execute(people.order_by(col(PersonRow.id)).limit(500))]
    return stores, technicians


# --- figures as words and charts ---

def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 600:
        return f"{seconds:.0f}秒"
    if seconds < 3600 * 48:
        return f"{seconds / 3600:.1f}小时"
    return f"{seconds / 86400:.1f}天"


def kpis(f: DashboardFigures) -> list[dict[str, str]]:
    t = f.totals
    closed = t.get("closed", 0)
    fr, acc = f.first_response, f.acceptance
    return [
        {"label": "报修", "value": str(t.get("reported", 0)), "note": "本期报修的工单"},
        {"label": "首次响应中位数", "value": _duration(fr.median_s if fr else None),
         "note": f"≤90秒 {_pct(fr.within if fr else None)}（报修→派单送达技师）"},
        {"label": "接单中位数", "value": _duration(acc.median_s if acc else None),
         "note": f"P90 {_duration(acc.p90_s if acc else None)}（报修→技师接单）"},
        {"label": "过程可追溯率", "value": _pct(t.get("traceable", 0) / closed if closed else None),
         "note": f"结案 {closed} 张中签到+≥3张照片+签字确认齐全"},
        {"label": "一次修复率", "value": _pct((closed - t.get("ftf_failed", 0)) / closed if closed else None),
         "note": "未返修且30天内无同设备重复报修"},
        {"label": "平均结案时长", "value": _duration(t.get("closure_s", 0) / closed if closed else None),
         "note": "报修→结案"},
        {"label": "返修率", "value": _pct(t.get("reworked", 0) / closed if closed else None),
         "note": "结案后重开或签字时退回"},
        {"label": "当前积压", "value": str(f.backlog_total),
         "note": f"最久 {f.oldest_open_days:.1f} 天" if f.oldest_open_days is not None else "无未结工单"},
    ]


def _axis(kind: str, data: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    axis: dict[str, Any] = {"type": kind, **extra}
    if data is not None:
        axis["data"] = data
    return axis


def _base(**option: Any) -> dict[str, Any]:
    return {"animation": False, "tooltip": {"trigger": "axis"}, "grid": {"left": 48, "right": 24, "top": 40,
                                                                          "bottom": 40, "containLabel": True},
            "legend": {"top": 0}, **option}


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)


def charts(f: DashboardFigures) -> dict[str, dict[str, Any]]:
    """ECharts options per chart id (plain data: rendered as JSON, no functions)."""
    days = [d[5:] for d in f.days]
    out: dict[str, dict[str, Any]] = {}
    out["waits"] = _base(xAxis=_axis("category", [b[0] for b in f.wait_buckets]), yAxis=_axis("value", name="工单"),
                         series=[{"name": "首次响应", "type": "bar", "data": [b[1] for b in f.wait_buckets]},
                                 {"name": "接单", "type": "bar", "data": [b[2] for b in f.wait_buckets]}])
    out["trend"] = _base(
        xAxis=_axis("category", days), yAxis=[_axis("value", name="%", max=100), _axis("value", name="工单")],
        series=[{"name": "可追溯率", "type": "line", "data": [_rate(d["traceability"]) for d in f.per_day]},
                {"name": "一次修复率", "type": "line", "data": [_rate(d["ftf"]) for d in f.per_day]},
                {"name": "首响≤90秒", "type": "line", "data": [_rate(d["within90"]) for d in f.per_day]},
                {"name": "报修", "type": "bar", "yAxisIndex": 1, "data": [d["reported"] for d in f.per_day],
                 "itemStyle": {"opacity": 0.35}}])
    out["sla"] = _base(xAxis=_axis("category", [r["priority"] for r in f.compliance]),
                       yAxis=_axis("value", name="%", max=100),
                       series=[{"name": "响应达成率", "type": "bar", "data": [_rate(r["response"]["rate"])
                                                                         for r in f.compliance]},
                               {"name": "解决达成率", "type": "bar", "data": [_rate(r["resolution"]["rate"])
                                                                         for r in f.compliance]}])
    age_labels = list(f.backlog[0]["ages"]) if f.backlog else []
    out["backlog"] = _base(xAxis=_axis("category", [r["label"] for r in f.backlog]), yAxis=_axis("value", name="工单"),
                           series=[{"name": label, "type": "bar", "stack": "age",
                                    "data": [r["ages"][label] for r in f.backlog]} for label in age_labels])
    top = list(reversed(f.blocked_top))
    out["blocked"] = _base(tooltip={"trigger": "item"}, xAxis=_axis("value", name="小时"),
                           yAxis=_axis("category", [f"{r['number']} {r['label']}" for r in top]),
                           series=[{"name": "阻塞时长", "type": "bar", "data": [r["hours"] for r in top]}])
    out["technicians"] = _base(
        xAxis=_axis("category", [r["name"] for r in f.technicians], axisLabel={"rotate": 30}),
        yAxis=[_axis("value", name="工单"), _axis("value", name="评分", min=0, max=5)],
        series=[{"name": "本期结案", "type": "bar", "data": [r["closed"] for r in f.technicians]},
                {"name": "当前在办", "type": "bar", "data": [r["open"] for r in f.technicians]},
                {"name": "平均评分", "type": "line", "yAxisIndex": 1, "data": [r["rating"] for r in f.technicians]}])
    located = [s for s in f.stores if s["lat"] is not None]
    biggest = max((s["reported"] for s in located), default=1) or 1
    out["stores"] = {
        "animation": False, "tooltip": {"trigger": "item"},
        "grid": {"left": 48, "right": 24, "top": 24, "bottom": 40, "containLabel": True},
        "xAxis": _axis("value", name="经度", scale=True), "yAxis": _axis("value", name="纬度", scale=True),
        "visualMap": {"min": 0, "max": biggest, "dimension": 2, "orient": "horizontal", "left": "center",
                      "bottom": 0, "calculable": True, "inRange": {"color": ["#ffe08a", "#f08c3a", "#c62828"]}},
        "series": [{"name": "报修量", "type": "scatter",
                    "data": [{"name": s["name"], "value": [s["lng"], s["lat"], s["reported"]],
                              "symbolSize": 8 + 32 * (s["reported"] / biggest) ** 0.5} for s in located]}]}
    out["photos"] = _base(xAxis=_axis("category", [r["photos"] for r in f.photo_rating]),
                          yAxis=[_axis("value", name="工单"), _axis("value", name="评分", min=0, max=5)],
                          series=[{"name": "工单数", "type": "bar", "data": [r["tickets"] for r in f.photo_rating]},
                                  {"name": "平均评分", "type": "line", "yAxisIndex": 1,
                                   "data": [r["rating"] for r in f.photo_rating]}])
    return out


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/dashboards", dashboards_page)
