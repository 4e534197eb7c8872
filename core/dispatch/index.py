"""CandidateIndex: certification buckets + a lat/lng grid, searched best-first with score bounds.

Why this shape. The score is `nd(t) + w_d * distance_score(d)`, where the non-distance part
`nd(t)` (qualification, load, rating) depends on the technician, the category and the
policy, but not on the site. So:
  * buckets: only dispatchable technicians (on duty, below max load) are in the grids, one grid
    for everyone and one per certification; a category with required certifications searches
    the smallest bucket (every candidate holds all of them);
  * per cell and category, the technicians passing the category filters are cached sorted by
    `nd` (built lazily, kept sorted by upserts, dropped when the policy changes);
  * a cell whose distance to the site is at least `lb` (a guaranteed lower bound) cannot hold
    anyone scoring above `max nd in cell + w_d * distance_score(lb)`; cells are visited by that
    bound, and inside a cell technicians by `nd`, until `limit` candidates beat every bound left.
The result is therefore exactly the full scan's top `limit`: same evaluate(), same sort key.
A profile change is one `upsert`: a few dict updates and bisect inserts.

A technician sits at both their last position and their home store (which one counts depends
on `now` and the staleness limit); one without any position sits in a cell with lb = +inf.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable, Iterator
from datetime import datetime

from core.dispatch.geo import EARTH_RADIUS_KM, GeoPoint
from core.dispatch.model import DispatchRequest, RankedCandidate, TechnicianProfile
from core.dispatch.policy import DispatchPolicy
from core.dispatch.scoring import (
    SCORE_DECIMALS,
    Scored,
    ScoringContext,
    category_exclusion_reasons,
    evaluate,
    exclusion_reasons,
    finish_ranking,
    non_distance_score,
)

CellKey = tuple[int, int] | None  # None: technicians without any position
DEFAULT_CELL_DEG = 0.2  # ~22 km; cells are cheap to skip, so a few hundred per bucket is plenty
_KM_PER_DEG_LAT = math.pi * EARTH_RADIUS_KM / 180.0
# Float slack so that the bounds stay bounds despite rounding (far below score resolution).
_LB_RELATIVE_SLACK = 1e-9
_LB_ABSOLUTE_SLACK_KM = 1e-6
_BOUND_SLACK = 1e-12
_MAX_CHANGED_CELLS = 64  # changed cells bounded per query before the far order is rebuilt


def is_dispatchable(tech: TechnicianProfile) -> bool:
    """The per-technician part of the hard filters; only these are kept in the grids."""
    return tech.on_duty and tech.open_load < tech.max_load


def _category_nd(tech: TechnicianProfile, ctx: ScoringContext) -> float | None:
    return None if category_exclusion_reasons(tech, ctx) else non_distance_score(tech, ctx)


class _Cell:
    __slots__ = ("by_category", "key", "lat_abs_max", "lat_hi", "lat_lo", "lng_hi", "lng_lo", "members")

    def __init__(self, key: CellKey, cell_deg: float) -> None:
        self.key = key
        self.members: dict[str, TechnicianProfile] = {}
        # category -> [(-nd, person_id, tech)] ascending = best first; only those passing the
        # category filters. Built lazily, then kept up to date by upserts (bisect, no rebuild).
        self.by_category: dict[str, list[tuple[float, str, TechnicianProfile]]] = {}
        if key is None:
            self.lat_lo = self.lat_hi = self.lng_lo = self.lng_hi = self.lat_abs_max = math.nan
        else:
            i, j = key
            self.lat_lo, self.lat_hi = i * cell_deg, (i + 1) * cell_deg
            self.lng_lo, self.lng_hi = j * cell_deg, (j + 1) * cell_deg
            self.lat_abs_max = min(90.0, max(abs(self.lat_lo), abs(self.lat_hi)))

    def ranked(self, ctx: ScoringContext) -> list[tuple[float, str, TechnicianProfile]]:
        category = ctx.request.category
        ranked = self.by_category.get(category)
        if ranked is None:
            ranked = [(-nd, pid, t) for pid, t in self.members.items() if (nd := _category_nd(t, ctx)) is not None]
            ranked.sort()
            self.by_category[category] = ranked
        return ranked

    def insert(self, tech: TechnicianProfile, nds: dict[str, float | None]) -> None:
        self.members[tech.person_id] = tech
        for category, ranked in self.by_category.items():
            nd = nds[category]
            if nd is not None:
                bisect.insort(ranked, (-nd, tech.person_id, tech))

    def delete(self, tech: TechnicianProfile, nds: dict[str, float | None]) -> bool:
        if self.members.pop(tech.person_id, None) is None:
            return False
        for category, ranked in self.by_category.items():
            nd = nds[category]
            if nd is not None:
                # (-nd, pid) is unique in a cell, so the tech object is never compared.
                i = bisect.bisect_left(ranked, (-nd, tech.person_id))
                if i < len(ranked) and ranked[i][1] == tech.person_id:
                    del ranked[i]
        return True

    def lower_bound_km(self, lat0: float, lng0: float) -> float:
        """A distance no point of this cell is closer than (great-circle, km)."""
        if lat0 < self.lat_lo:
            dlat = self.lat_lo - lat0
        elif lat0 > self.lat_hi:
            dlat = lat0 - self.lat_hi
        else:
            dlat = 0.0
        if self.lng_lo <= lng0 <= self.lng_hi:
            dlng = 0.0
        else:  # the shorter way round, east or west
            dlng = min((self.lng_lo - lng0) % 360.0, (lng0 - self.lng_hi) % 360.0)
        if dlat == 0.0 and dlng == 0.0:
            return 0.0
        # hav(d) = hav(dlat) + cos(lat1) cos(lat2) hav(dlng) >= hav(dlat_min) + cos²(max |lat|) hav(dlng_min)
        cos_min = math.cos(math.radians(max(abs(lat0), self.lat_abs_max)))
        h = math.sin(math.radians(dlat) / 2.0) ** 2 + cos_min * cos_min * math.sin(math.radians(dlng) / 2.0) ** 2
        lb = 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))
        return max(0.0, lb * (1.0 - _LB_RELATIVE_SLACK) - _LB_ABSOLUTE_SLACK_KM)


class _Grid:
    """Technicians of one bucket by cell."""

    __slots__ = ("_by_max_nd", "cell_deg", "cells", "size")

    def __init__(self, cell_deg: float) -> None:
        self.cell_deg = cell_deg
        self.cells: dict[CellKey, _Cell] = {}
        self.size = 0  # technicians (one may sit in two cells)
        # category -> ([(max nd, cell)] best first, keys changed since): the site-independent order
        # of far cells. Changed cells are bounded afresh at query time; too many → rebuild.
        self._by_max_nd: dict[str, tuple[list[tuple[float, _Cell]], set[CellKey]]] = {}

    def add(self, tech: TechnicianProfile, keys: Iterable[CellKey], nds: dict[str, float | None]) -> None:
        self.size += 1
        self._touch(keys)
        for key in keys:
            cell = self.cells.get(key)
            if cell is None:
                cell = self.cells[key] = _Cell(key, self.cell_deg)
            cell.insert(tech, nds)

    def discard(self, tech: TechnicianProfile, keys: Iterable[CellKey], nds: dict[str, float | None]) -> None:
        removed = False
        for key in keys:
            cell = self.cells.get(key)
            if cell is not None and cell.delete(tech, nds):
                removed = True
                if not cell.members:
                    del self.cells[key]
        if removed:
            self.size -= 1
            self._touch(keys)

    def _touch(self, keys: Iterable[CellKey]) -> None:
        for category, (_, changed) in list(self._by_max_nd.items()):
            changed.update(keys)
            if len(changed) > _MAX_CHANGED_CELLS:
                del self._by_max_nd[category]

    def forget_rankings(self) -> None:
        self._by_max_nd.clear()
        for cell in self.cells.values():
            cell.by_category.clear()

    def cells_by_bound(self, ctx: ScoringContext) -> Iterator[tuple[float, float, _Cell]]:
        """(score bound, distance score bound, cell) for cells with candidates, best bound first (lazy).

        Cells within scoring range of the site get an exact lower-bound distance; all others can
        only earn their best nd, so they come from a site-independent order by max nd. The two
        sorted streams are merged.
        """
        w_distance = ctx.policy.weights.distance
        max_km = ctx.policy.max_distance_km
        site = ctx.site
        far, changed = self._cells_by_max_nd(ctx)
        near = self._near_cells(site, max_km) if site is not None else []
        if near is None:  # no cheap box (poles, antimeridian, huge range): bound every cell
            near = list(self.cells.values())
        near.extend(cell for key in changed if (cell := self.cells.get(key)) is not None)
        near_bounds: list[tuple[float, float, _Cell]] = []
        near_ids: set[int] = set()
        for cell in near:
            if id(cell) in near_ids:
                continue
            near_ids.add(id(cell))
            ranked = cell.ranked(ctx)
            if not ranked:
                continue
            if site is None or cell.key is None:
                distance_bound = 0.0
            else:
                distance_bound = max(0.0, 1.0 - cell.lower_bound_km(site.lat, site.lng) / max_km)
            near_bounds.append((w_distance * distance_bound - ranked[0][0], distance_bound, cell))
        near_bounds.sort(key=lambda item: -item[0])
        i = j = 0
        while i < len(near_bounds) or j < len(far):
            if j < len(far) and id(far[j][1]) in near_ids:
                j += 1  # handled by the near stream with a bound at least as high
            elif j >= len(far) or (i < len(near_bounds) and near_bounds[i][0] >= far[j][0]):
                yield near_bounds[i]
                i += 1
            else:
                yield far[j][0], 0.0, far[j][1]
                j += 1

    def _cells_by_max_nd(self, ctx: ScoringContext) -> tuple[list[tuple[float, _Cell]], set[CellKey]]:
        category = ctx.request.category
        cached = self._by_max_nd.get(category)
        if cached is None:
            order = [(-ranked[0][0], cell) for cell in self.cells.values() if (ranked := cell.ranked(ctx))]
            order.sort(key=lambda item: -item[0])
            cached = self._by_max_nd[category] = (order, set())
        return cached

    def _near_cells(self, site: GeoPoint, max_km: float) -> list[_Cell] | None:
        """Cells that may lie closer than max_km to `site`; None when no small box is safe.

        Outside the box the latitude gap exceeds max_km/R, or the longitude gap Δλ satisfies
        2R·asin(cos(max |lat|)·sin(Δλ/2)) >= max_km, so the distance score there is 0.
        """
        s = self.cell_deg
        dlat = max_km / _KM_PER_DEG_LAT + s
        lat_lo, lat_hi = site.lat - dlat, site.lat + dlat
        cos_min = math.cos(math.radians(min(90.0, max(abs(lat_lo), abs(lat_hi)) + s)))
        if cos_min <= 0.0:
            return None
        x = math.sin(max_km / (2.0 * EARTH_RADIUS_KM)) / cos_min
        if x >= 1.0:
            return None
        dlng = math.degrees(2.0 * math.asin(x)) + s
        if site.lng - dlng < -180.0 or site.lng + dlng > 180.0:
            return None
        rows = range(math.floor(lat_lo / s), math.floor(lat_hi / s) + 1)
        cols = range(math.floor((site.lng - dlng) / s), math.floor((site.lng + dlng) / s) + 1)
        if len(rows) * len(cols) > len(self.cells):
            return None
        cells = self.cells
        return [cell for i in rows for j in cols if (cell := cells.get((i, j))) is not None]


class CandidateIndex:
    """Dispatch candidates by certification and place. Not thread-safe; one per process/tenant."""

    def __init__(self, technicians: Iterable[TechnicianProfile] = (), *, cell_deg: float = DEFAULT_CELL_DEG) -> None:
        if not (0.0 < cell_deg <= 10.0):
            raise ValueError(f"cell_deg must be in (0, 10], got {cell_deg}")
        self.cell_deg = cell_deg
        self._profiles: dict[str, TechnicianProfile] = {}
        self._all = _Grid(cell_deg)  # every dispatchable technician
        self._by_cert: dict[str, _Grid] = {}  # dispatchable technicians holding that certification
        self._ranking_policy: DispatchPolicy | None = None
        # One context per category with cached rankings: what an upsert needs to compute nd.
        self._ranking_ctx: dict[str, ScoringContext] = {}
        for tech in technicians:
            self.upsert(tech)

    def __len__(self) -> int:
        return len(self._profiles)

    def __contains__(self, person_id: object) -> bool:
        return person_id in self._profiles

    def get(self, person_id: str) -> TechnicianProfile | None:
        return self._profiles.get(person_id)

    def profiles(self) -> Iterator[TechnicianProfile]:
        """Every technician, dispatchable or not (for the dry run's exclusion list)."""
        return iter(self._profiles.values())

    def upsert(self, tech: TechnicianProfile) -> None:
        """Add or replace a technician's snapshot (duty, load, position, certifications...)."""
        old = self._profiles.get(tech.person_id)
        if old is not None:
            self._unplace(old)
        self._profiles[tech.person_id] = tech
        self._place(tech)

    def remove(self, person_id: str) -> TechnicianProfile | None:
        old = self._profiles.pop(person_id, None)
        if old is not None:
            self._unplace(old)
        return old

    def warm(self, policy: DispatchPolicy, categories: Iterable[str], now: datetime) -> None:
        """Precompute the per-cell rankings so that the first decision of a category is fast too."""
        for category in categories:
            ctx = ScoringContext.build(DispatchRequest("warm-up", category), policy, now)
            grid = self._prepare(ctx)
            if grid is not None:
                for cell in grid.cells.values():
                    cell.ranked(ctx)

    def search(self, ctx: ScoringContext, limit: int | None) -> list[RankedCandidate]:
        grid = self._prepare(ctx)
        if grid is None:
            return []
        w_distance = ctx.policy.weights.distance
        top: list[float] = []  # min-heap of the best `limit` scores so far
        scored: list[Scored] = []
        seen: set[str] = set()

        def beaten(bound: float) -> bool:
            # Strict: an equal score could still win on the tie-breakers.
            return limit is not None and len(top) >= limit and top[0] > round(bound + _BOUND_SLACK, SCORE_DECIMALS)

        for cell_bound, distance_bound, cell in grid.cells_by_bound(ctx):
            if beaten(cell_bound):
                break  # cells come best bound first: nothing left can enter the top `limit`
            for neg_nd, pid, tech in cell.ranked(ctx):
                if beaten(w_distance * distance_bound - neg_nd):
                    break  # ranked by nd: the rest of this cell cannot either
                if pid in seen:
                    continue
                seen.add(pid)
                if exclusion_reasons(tech, ctx):
                    continue
                ev = evaluate(tech, ctx)
                scored.append((ev.sort_key(pid), tech, ev))
                if limit is not None:
                    if len(top) < limit:
                        heapq.heappush(top, ev.score)
                    elif ev.score > top[0]:
                        heapq.heapreplace(top, ev.score)
        return finish_ranking(scored, ctx, limit)

    def _prepare(self, ctx: ScoringContext) -> _Grid | None:
        # Cached rankings hold nd under one policy; an edited policy invalidates them.
        if ctx.policy != self._ranking_policy:
            for grid in (self._all, *self._by_cert.values()):
                grid.forget_rankings()
            self._ranking_policy = ctx.policy
            self._ranking_ctx.clear()
        self._ranking_ctx.setdefault(ctx.request.category, ctx)
        return self._grid_for(ctx.required)

    def _nds(self, tech: TechnicianProfile) -> dict[str, float | None]:
        """nd of `tech` for every category with cached rankings (None: filtered out of it)."""
        return {category: _category_nd(tech, ctx) for category, ctx in self._ranking_ctx.items()}

    def _grid_for(self, required: frozenset[str]) -> _Grid | None:
        if not required:
            return self._all
        grids = [self._by_cert.get(cert) for cert in sorted(required)]
        present = [g for g in grids if g is not None]
        if len(present) < len(grids):
            return None  # nobody dispatchable holds one of the required certifications
        return min(present, key=lambda g: g.size)  # the smallest bucket: every candidate is in each

    def _keys(self, tech: TechnicianProfile) -> set[CellKey]:
        s = self.cell_deg
        keys: set[CellKey] = {
            (math.floor(p.lat / s), math.floor(p.lng / s)) for p in (tech.last_position, tech.home_position) if p
        }
        return keys or {None}

    def _place(self, tech: TechnicianProfile) -> None:
        if not is_dispatchable(tech):
            return
        keys = self._keys(tech)
        nds = self._nds(tech)
        self._all.add(tech, keys, nds)
        for cert in tech.certifications:
            grid = self._by_cert.get(cert)
            if grid is None:
                grid = self._by_cert[cert] = _Grid(self.cell_deg)
            grid.add(tech, keys, nds)

    def _unplace(self, tech: TechnicianProfile) -> None:
        if not is_dispatchable(tech):
            return
        keys = self._keys(tech)
        nds = self._nds(tech)
        self._all.discard(tech, keys, nds)
        for cert in tech.certifications:
            grid = self._by_cert.get(cert)
            if grid is not None:
                grid.discard(tech, keys, nds)
                if not grid.cells:
                    del self._by_cert[cert]
