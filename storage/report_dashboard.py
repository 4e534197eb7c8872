"""The console dashboards' figures (issue 22) from the report aggregates (storage/report_aggregates.py).

One read job (`dashboard_job`, run off the loop like 报表) answers a page: the period's local days, the
filters (the staff's store scope and the chosen store, category, technician). Sums come from the
per-day rows; the figures that are not sums (percentiles, per-technician, photos against rating, the
backlog) from the facts' indexes; the live part (events after the watermark) is applied on top, as
for 报表. Definitions (seed 1, docs/dashboards.md):

* first response: report → the first offer delivered to a technician; acceptance: report → 接单;
* 100 % traceability: share of tickets closed in the period whose trail has the check-in (with its
  position), ≥ 3 work photos, the signature and both confirmations;
* first-time fix: closed in the period, not reworked and no repeat on the asset within 30 days;
* SLA compliance per priority and track (met / (met + breached)); average closure time (report → 结案);
* backlog: open tickets now, per state and age; blocked-duration TOP10 (tickets reported in the period);
* reopen rate: closed tickets that were reopened or sent back at sign-off;
* technicians: closed in the period, average rating, open now;
* heat map: tickets reported per store, at the store's position;
* photos per ticket against the rating of closed tickets, with Pearson's r.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select

from core.model import TicketStatus
from core.reports.facts import MIN_WAIT
from storage.report_aggregates import (
    FACTS,
    ROLLUPS,
    TECHS,
    VALUES,
    Execute,
    Filters,
    Live,
    WaitFigures,
    _not_live,
    day_sums,
    live_part,
    of_this_chain,
    ongoing_stays,
    ongoing_totals,
    read_state,
    ready,
    running_outcomes,
    top_stays,
    wait_figures,
    wait_histograms,
    wait_totals,
)
from storage.tables import PersonRow, StoreRow
from storage.tables_reports import DAY_COUNTERS

WAIT_BUCKETS = ((0, 30, "≤30秒"), (31, 60, "31–60秒"), (61, 90, "61–90秒"), (91, 180, "1.5–3分钟"),
                (181, 600, "3–10分钟"), (601, 3600, "10–60分钟"), (3601, None, "超过1小时"))
AGE_BUCKETS = ((timedelta(days=1), "1天内"), (timedelta(days=3), "1–3天"), (timedelta(days=7), "3–7天"),
               (None, "超过7天"))
TECHNICIANS_SHOWN = 15
STATE_LABELS = {s.value: s.label for s in TicketStatus}


@dataclass(slots=True)
class DashboardFigures:
    ready: bool
    progress: float | None = None  # the backfill's share done while not ready
    days: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    first_response: WaitFigures | None = None
    acceptance: WaitFigures | None = None
    wait_buckets: list[tuple[str, int, int]] = field(default_factory=list)  # label, first response, acceptance
    per_day: list[dict[str, Any]] = field(default_factory=list)
    compliance: list[dict[str, Any]] = field(default_factory=list)
    backlog: list[dict[str, Any]] = field(default_factory=list)  # per state: label, count, per age bucket
    backlog_total: int = 0
    oldest_open_days: float | None = None
    blocked_top: list[dict[str, Any]] = field(default_factory=list)
    blocked_totals: list[dict[str, Any]] = field(default_factory=list)
    technicians: list[dict[str, Any]] = field(default_factory=list)
    stores: list[dict[str, Any]] = field(default_factory=list)
    photo_rating: list[dict[str, Any]] = field(default_factory=list)
    photo_rating_r: float | None = None
    categories: list[str] = field(default_factory=list)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def dashboard_job(execute: Execute, first: date, last: date, now: datetime, zone_name: str,
                  filters: Filters) -> DashboardFigures:
    """The page's figures (a read job: module level, pickled by reference)."""
    zone = ZoneInfo(zone_name)
    for _ in range(3):
        state = read_state(execute)
        if not ready(state, zone_name):
            return _not_ready(state)
        assert state is not None
        if not of_this_chain(execute, state):  # another database's aggregates: folded again from scratch
            return _not_ready(None)
        figures = _figures(execute, state, first, last, now, zone, filters)
        if read_state(execute) == state:
            break
    return figures


def _not_ready(state: dict[str, Any] | None) -> DashboardFigures:
    progress = None
    if state is not None and state.get("backfill_until_id"):
        progress = min(1.0, max(0.0, (state["backfill_next_id"] or 0) / state["backfill_until_id"]))
    return DashboardFigures(ready=False, progress=progress)


def _figures(execute: Execute, state: dict[str, Any], first: date, last: date, now: datetime, zone: ZoneInfo,
             filters: Filters) -> DashboardFigures:
    live = live_part(execute, state, zone, now)
    out = DashboardFigures(ready=True)
    by_store = day_sums(execute, first, last, filters, live, group="store_id")
    out.totals = {k: sum(int(group.get(k, 0)) for group in by_store.values()) for k in DAY_COUNTERS}
    fr_hist, acc_hist = wait_histograms(execute, first, last, filters, live)
    out.first_response, out.acceptance = wait_figures(fr_hist), wait_figures(acc_hist)
    out.wait_buckets = [(label, _in_bucket(fr_hist, lo, hi), _in_bucket(acc_hist, lo, hi))
                        for lo, hi, label in WAIT_BUCKETS]
    by_day = day_sums(execute, first, last, filters, live, group="day")
    day = first
    while day <= last:
        row = by_day.get(day.isoformat(), {})
        out.days.append(day.isoformat())
        out.per_day.append({"day": day.isoformat(), "reported": row.get("reported", 0), "closed": row.get("closed", 0),
                            "traceability": _ratio(row.get("traceable", 0), row.get("closed", 0)),
                            "ftf": _ratio(row.get("closed", 0) - row.get("ftf_failed", 0), row.get("closed", 0)),
                            "within90": _ratio(row.get("fr_within", 0), row.get("fr_n", 0))})
        day += timedelta(days=1)
    out.compliance = _compliance(execute, first, last, filters, live, now)
    _backlog(execute, out, filters, live, now)
    _blocked(execute, out, first, last, filters, live, now)
    out.technicians = _technicians(execute, first, last, filters, live)
    out.stores = _stores(execute, by_store, filters.store_ids)
    out.photo_rating, out.photo_rating_r = _photo_rating(execute, first, last, filters, live)
    out.categories = sorted(c for (c,) in execute(
        select(ROLLUPS.c.value).where(ROLLUPS.c.dim == "category", ROLLUPS.c.day.between(first, last)).distinct())
        if c) if filters.category is None else [filters.category]
    return out


def _in_bucket(hist: dict[int | None, int], lo: int, hi: int | None) -> int:
    return sum(n for v, n in hist.items() if v is not None and v >= lo and (hi is None or v <= hi))


def _compliance(execute: Execute, first: date, last: date, filters: Filters, live: Live, now: datetime
                ) -> list[dict[str, Any]]:
    by_priority = day_sums(execute, first, last, filters, live, group="priority")
    running = running_outcomes(execute, first, last, filters, live, now)
    rows = []
    for priority in sorted(set(by_priority) | set(running), key=lambda p: ("紧急", "常规", "咨询").index(p)
                           if p in ("紧急", "常规", "咨询") else 9):
        sums = by_priority.get(priority, {})
        row: dict[str, Any] = {"priority": priority or "—"}
        for track, prefix in (("response", "resp"), ("resolution", "res")):
            met = sums.get(f"{prefix}_met", 0)
            breached = sums.get(f"{prefix}_breached", 0) + running[priority][track]["breached"]
            row[track] = {"met": met, "breached": breached, "running": running[priority][track]["running"],
                          "rate": _ratio(met, met + breached)}
        rows.append(row)
    return rows


def _backlog(execute: Execute, out: DashboardFigures, filters: Filters, live: Live, now: datetime) -> None:
    """Open tickets now (any report day), per state and age."""
    ages = [case((FACTS.c.created_at >= now - limit, 1), else_=0) if limit else None for limit, _ in AGE_BUCKETS]
    columns = [FACTS.c.status, func.count(), func.min(FACTS.c.created_at)]
    columns += [func.sum(a) for a in ages if a is not None]
    exclude = [FACTS.c.number.not_in(sorted(live.numbers))] if live.numbers else []
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * (len(AGE_BUCKETS) + 1))
    oldest: datetime | None = None
    for row in execute(select(*columns).where(FACTS.c.is_open.is_(True), *filters.where(FACTS), *exclude)
                       .group_by(FACTS.c.status)):
        status, total, earliest, *within = row
        entry = counts[status]
        entry[0] += int(total)
        previous = 0
        for index, value in enumerate(within):  # cumulative "younger than" → per bucket
            entry[1 + index] += int(value or 0) - previous
            previous = int(value or 0)
        entry[len(AGE_BUCKETS)] += int(total) - previous
        oldest = earliest if oldest is None or (earliest and earliest < oldest) else oldest
    for f in live.new.values():
        if f.is_open and filters.match(f):
            entry = counts[f.status]
            entry[0] += 1
            age = now - f.created_at
            index = next((i for i, (limit, _) in enumerate(AGE_BUCKETS) if limit is None or age < limit), 0)
            entry[1 + index] += 1
            oldest = f.created_at if oldest is None or f.created_at < oldest else oldest
    order = list(STATE_LABELS)
    out.backlog = [{"state": s, "label": STATE_LABELS.get(s, s), "count": v[0],
                    "ages": dict(zip([label for _, label in AGE_BUCKETS], v[1:], strict=True))}
                   for s, v in sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
                   if v[0]]
    out.backlog_total = sum(v["count"] for v in out.backlog)
    out.oldest_open_days = (now - oldest).total_seconds() / 86400 if oldest else None


def _blocked(execute: Execute, out: DashboardFigures, first: date, last: date, filters: Filters, live: Live,
             now: datetime) -> None:
    """The ten longest waits of tickets reported in the period, and the total per state."""
    unfiltered = filters == Filters()
    if unfiltered:
        ongoing = ongoing_stays(execute, first, last, filters, live, now)
        top = top_stays(execute, first, last, live, now, None, ongoing)
    else:  # a store/category/technician: the stays of the (≤ 10, ties included) tickets with the longest
        # ones — a stay of any other ticket has ten longer ones before it — and the ongoing stays
        ongoing = ongoing_stays(execute, first, last, filters, live, now)
        where = [FACTS.c.created_day.between(first, last), *filters.where(FACTS), *_not_live(live)]
        tenth = execute(select(FACTS.c.longest_stay).where(*where).order_by(FACTS.c.longest_stay.desc())
                        .limit(1).offset(9))
        least = max(int(tenth[0][0]) if tenth else 0, MIN_WAIT // timedelta(microseconds=1))
        found: list[tuple[int, str, str, Any, bool]] = []
        for number, stays in execute(select(FACTS.c.number, FACTS.c.stays)
                                     .where(*where, FACTS.c.longest_stay >= least)):
            found += [(int(x[2]), number, x[0], x[1], False) for x in stays or ()]
        for f in live.new.values():
            if filters.match(f) and first <= f.created_day <= last:
                found += [(x.micros, f.number, x.state, x.entered_at, False) for x in f.stays]
        found += [((now - since) // timedelta(microseconds=1), number, state, since, True)
                  for number, state, since in ongoing]
        minimum = timedelta(minutes=1) // timedelta(microseconds=1)
        best = heapq.nlargest(10, (x for x in found if x[0] >= minimum), key=lambda x: (x[0], x[1]))
        top = [(n, st, e if isinstance(e, datetime) else datetime.fromisoformat(e), m, o) for m, n, st, e, o in best]
    out.blocked_top = [{"number": n, "state": s, "label": STATE_LABELS.get(s, s), "entered": e,
                        "hours": round(m / 3_600_000_000, 1), "ongoing": o} for n, s, e, m, o in top]
    if unfiltered:  # the totals per state, as 报表 sums them (per-day rows)
        out.blocked_totals = [{"state": s, "label": STATE_LABELS.get(s, s), "hours": round(m / 3_600_000_000, 1),
                               "stays": n}
                              for s, (m, n) in sorted(wait_totals(execute, first, last, live, ongoing_totals(
                                  execute, first, last, filters, live, now)).items(),
                                                      key=lambda kv: kv[1][0], reverse=True)]


def _technicians(execute: Execute, first: date, last: date, filters: Filters, live: Live) -> list[dict[str, Any]]:
    exclude = [FACTS.c.number.not_in(sorted(live.numbers))] if live.numbers else []
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # closed, rating sum, ratings, open
    if filters == Filters():  # the per-day rows, minus the live part's stored facts (as the query below)
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for assignee, closed, rating_sum, ratings in execute(
                select(TECHS.c.assignee_id, func.sum(TECHS.c.closed), func.sum(TECHS.c.rating_sum),
                       func.sum(TECHS.c.rating_n)).where(TECHS.c.day.between(first, last))
                .group_by(TECHS.c.assignee_id)):
            sums[assignee] = [int(closed or 0), int(rating_sum or 0), int(ratings or 0)]
        for f in live.old.values():
            if f.assignee_id and f.closed_day is not None and first <= f.closed_day <= last:
                entry = sums[f.assignee_id]
                entry[0] -= 1
                entry[1] -= f.rating or 0
                entry[2] -= int(f.rating is not None)
        for assignee, values in sums.items():
            if values[0]:  # a technician with closed tickets (no rows: not listed for them)
                per[assignee][:3] = values
    else:
        for assignee, closed, rating_sum, ratings in execute(
                select(FACTS.c.assignee_id, func.count(), func.sum(FACTS.c.rating), func.count(FACTS.c.rating))
                .where(FACTS.c.closed_day.between(first, last), FACTS.c.assignee_id != "",
                       *filters.where(FACTS), *exclude).group_by(FACTS.c.assignee_id)):
            per[assignee][:3] = [int(closed), int(rating_sum or 0), int(ratings)]
    for assignee, count in execute(select(FACTS.c.assignee_id, func.count()).where(
            FACTS.c.is_open.is_(True), FACTS.c.assignee_id != "", *filters.where(FACTS), *exclude)
            .group_by(FACTS.c.assignee_id)):
        per[assignee][3] = int(count)
    for f in live.new.values():
        if not f.assignee_id or not filters.match(f):
            continue
        entry = per[f.assignee_id]
        if f.ftf_counted and f.closed_day and first <= f.closed_day <= last:
            entry[0] += 1
            if f.rating is not None:
                entry[1] += f.rating
                entry[2] += 1
        if f.is_open:
            entry[3] += 1
    names = _names(execute, list(per))
    ranked = sorted(per.items(), key=lambda kv: (kv[1][0] + kv[1][3], kv[0]), reverse=True)[:TECHNICIANS_SHOWN]
    return [{"id": pid, "name": names.get(pid, pid), "closed": v[0], "open": v[3],
             "rating": round(v[1] / v[2], 2) if v[2] else None, "ratings": v[2]} for pid, v in ranked]


def _names(execute: Execute, ids: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        out.update({r[0]: r[1] for r in execute(select(PersonRow.id, PersonRow.name).where(  # type: ignore[call-overload]
            PersonRow.id.in_(ids[start:start + 500])))})  # type: ignore[attr-defined]
    return out


def _stores(execute: Execute, per: dict[str, dict[str, int]], scope: frozenset[str] | None) -> list[dict[str, Any]]:
    """Per store: tickets reported and closed, traceability, position. Every located store in the
    scope is listed, those without a ticket in the period too: the heat map shows the whole store map
    (quiet stores pale), not only where something broke — never an empty chart while stores exist."""
    known = {r[0]: (r[1], r[2], r[3]) for r in execute(select(StoreRow.id, StoreRow.name, StoreRow.lat,  # type: ignore[call-overload]
                                                               StoreRow.lng))}
    per = dict(per)
    for store_id, (_, lat, _lng) in known.items():
        if lat is not None and store_id not in per and (scope is None or store_id in scope):
            per[store_id] = {}
    out = []
    for store_id, sums in sorted(per.items(), key=lambda kv: (-kv[1].get("reported", 0), kv[0])):
        name, lat, lng = known.get(store_id, (store_id or "未指定门店", None, None))
        out.append({"id": store_id, "name": name, "lat": lat, "lng": lng, "reported": sums.get("reported", 0),
                    "closed": sums.get("closed", 0),
                    "traceability": _ratio(sums.get("traceable", 0), sums.get("closed", 0))})
    return out


def _photo_rating(execute: Execute, first: date, last: date, filters: Filters, live: Live
                  ) -> tuple[list[dict[str, Any]], float | None]:
    exclude = [FACTS.c.number.not_in(sorted(live.numbers))] if live.numbers else []
    cells: dict[tuple[int, int], int] = defaultdict(int)
    if filters == Filters():  # the per-day cells (the live part's stored facts taken out)
        for photos, rating, count in execute(
                select(VALUES.c.x, VALUES.c.y, func.sum(VALUES.c.n)).where(
                    VALUES.c.kind == "photo", VALUES.c.day.between(first, last)).group_by(VALUES.c.x, VALUES.c.y)):
            cells[(int(photos), int(rating))] += int(count or 0)
        for f in live.old.values():
            if f.rating is not None and f.closed_day is not None and first <= f.closed_day <= last:
                cells[(f.photos, f.rating)] -= 1
        for key in [k for k, n in cells.items() if not n]:
            del cells[key]
    else:
        for photos, rating, count in execute(
                select(FACTS.c.photos, FACTS.c.rating, func.count()).where(
                    FACTS.c.closed_day.between(first, last), FACTS.c.rating.is_not(None),
                    *filters.where(FACTS), *exclude).group_by(FACTS.c.photos, FACTS.c.rating)):
            cells[(int(photos), int(rating))] += int(count)
    for f in live.new.values():
        if f.rating is not None and f.ftf_counted and f.closed_day and first <= f.closed_day <= last \
                and filters.match(f):
            cells[(f.photos, f.rating)] += 1
    per_photos: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for (photos, rating), count in cells.items():
        per_photos[min(photos, 6)][0] += count
        per_photos[min(photos, 6)][1] += rating * count
    rows = [{"photos": f"{p}张" if p < 6 else "6张及以上", "tickets": v[0], "rating": round(v[1] / v[0], 2)}
            for p, v in sorted(per_photos.items()) if v[0]]
    return rows, _pearson(cells)


def _pearson(unordered: dict[tuple[int, int], int]) -> float | None:
    cells = dict(sorted(unordered.items()))  # one order of the float sums whichever rows they came from
    n = sum(cells.values())
    if n < 3:
        return None
    mx = sum(x * c for (x, _), c in cells.items()) / n
    my = sum(y * c for (_, y), c in cells.items()) / n
    sxy = sum((x - mx) * (y - my) * c for (x, y), c in cells.items())
    sxx = sum((x - mx) ** 2 * c for (x, _), c in cells.items())
    syy = sum((y - my) ** 2 * c for (_, y), c in cells.items())
    return sxy / math.sqrt(sxx * syy) if sxx and syy else None
