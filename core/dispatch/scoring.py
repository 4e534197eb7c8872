"""Hard filters and the weighted score of one technician for one request.

Both the full scan and the CandidateIndex call exactly these functions, which is what
makes their rankings identical.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from core.dispatch.geo import GeoPoint, haversine_km
from core.dispatch.model import (
    POSITION_LABELS,
    SITE_LABELS,
    DispatchRequest,
    ExclusionReason,
    PositionSource,
    RankedCandidate,
    ScoreComponent,
    SiteSource,
    TechnicianProfile,
)
from core.dispatch.policy import DispatchPolicy

SCORE_DECIMALS = 9  # scores equal to 9 decimals are ties (hides float summation noise)


@dataclass(frozen=True, slots=True)
class ScoringContext:
    """Everything about one decision that does not depend on the technician, computed once."""

    request: DispatchRequest
    policy: DispatchPolicy
    now: datetime
    site: GeoPoint | None
    site_source: SiteSource
    fresh_since: datetime  # last positions older than this are stale
    required: frozenset[str]
    qualifying: frozenset[str]
    specialist_skills: frozenset[str]

    @classmethod
    def build(cls, request: DispatchRequest, policy: DispatchPolicy, now: datetime) -> ScoringContext:
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        if request.site is not None:
            site, source = request.site, SiteSource.SITE
        elif request.store is not None:
            site, source = request.store, SiteSource.STORE
        else:
            site, source = None, SiteSource.UNKNOWN
        return cls(
            request=request,
            policy=policy,
            now=now,
            site=site,
            site_source=source,
            fresh_since=now - timedelta(seconds=policy.position_max_age_s),
            required=policy.required_for(request.category),
            qualifying=policy.qualifying_certifications(request.category),
            specialist_skills=policy.specialist_exclusions.get(request.category, frozenset()),
        )


class Evaluation(NamedTuple):
    score: float
    qualification: float
    distance_score: float
    load_score: float
    rating_score: float
    distance_km: float | None
    position_source: PositionSource
    position: GeoPoint | None
    busy: float
    rating_used: float

    def sort_key(self, person_id: str) -> tuple[float, float, str]:
        """Best first: higher score, then shorter distance (unknown last), then person id."""
        return (-self.score, math.inf if self.distance_km is None else self.distance_km, person_id)


def exclusion_reasons(tech: TechnicianProfile, ctx: ScoringContext) -> tuple[ExclusionReason, ...]:
    """Why `tech` may not be offered this ticket; empty when eligible. All reasons, not just the first."""
    reasons: list[ExclusionReason] = []
    if tech.person_id in ctx.request.excluded_person_ids:
        reasons.append(ExclusionReason("excluded_id", "本单已拒单或超时未响应，不再派给此人"))
    if not tech.on_duty:
        reasons.append(ExclusionReason("off_duty", "不在岗"))
    if tech.open_load >= tech.max_load:
        reasons.append(ExclusionReason("at_capacity", f"在办 {tech.open_load} 单，已达上限 {tech.max_load} 单"))
    reasons.extend(category_exclusion_reasons(tech, ctx))
    return tuple(reasons)


def category_exclusion_reasons(tech: TechnicianProfile, ctx: ScoringContext) -> list[ExclusionReason]:
    """The filters that depend only on the category and the policy (the index caches them)."""
    category = ctx.request.category
    reasons: list[ExclusionReason] = []
    missing = ctx.required - tech.certifications
    if missing:
        reasons.append(
            ExclusionReason("missing_certification", f"{category}需要资质：{'、'.join(sorted(missing))}，此人没有")
        )
    if category in tech.excluded_categories:
        reasons.append(ExclusionReason("category_excluded", f"此人不接{category}工单"))
    if ctx.specialist_skills and tech.skills and tech.skills <= ctx.specialist_skills:
        only = "、".join(sorted(tech.skills))
        reasons.append(ExclusionReason("specialist", f"只会{only}，{category}工单不派"))
    return reasons


def effective_position(tech: TechnicianProfile, fresh_since: datetime) -> tuple[GeoPoint | None, PositionSource]:
    if tech.last_position is not None and tech.last_position_at is not None and tech.last_position_at >= fresh_since:
        return tech.last_position, PositionSource.LAST_POSITION
    if tech.home_position is not None:
        return tech.home_position, PositionSource.HOME_STORE
    return None, PositionSource.UNKNOWN


class _NonDistance(NamedTuple):
    qualification: float
    load_score: float
    busy: float
    rating_score: float
    rating_used: float


def _non_distance_parts(tech: TechnicianProfile, ctx: ScoringContext) -> _NonDistance:
    policy = ctx.policy
    skill = 1.0 if ctx.request.category in tech.skills else 0.0
    if ctx.qualifying:
        held = len(ctx.qualifying & tech.certifications) / len(ctx.qualifying)
        share = policy.qualification_skill_share
        qualification = share * skill + (1.0 - share) * held
    else:
        qualification = skill
    recent = min(tech.accepted_last_3_days / policy.recent_jobs_cap, 1.0)
    share_recent = policy.recent_jobs_share
    busy = (1.0 - share_recent) * min(tech.open_load / tech.max_load, 1.0) + share_recent * recent
    rating = policy.new_technician_rating if tech.rating is None else tech.rating
    return _NonDistance(qualification, 1.0 - busy, busy, rating / 5.0, rating)


def non_distance_score(tech: TechnicianProfile, ctx: ScoringContext) -> float:
    """The part of the score that does not depend on the site (same for every ticket of a category)."""
    w = ctx.policy.weights
    nd = _non_distance_parts(tech, ctx)
    return w.qualification * nd.qualification + w.load * nd.load_score + w.rating * nd.rating_score


def evaluate(tech: TechnicianProfile, ctx: ScoringContext) -> Evaluation:
    """The weighted score of an (eligible) technician. See core/dispatch/engine.py for the definition."""
    policy = ctx.policy
    weights = policy.weights
    nd = _non_distance_parts(tech, ctx)
    position, source = effective_position(tech, ctx.fresh_since)
    site = ctx.site
    if position is None or site is None:
        distance: float | None = None
        distance_score = 0.0
    else:
        distance = haversine_km(site.lat, site.lng, position.lat, position.lng)
        distance_score = max(0.0, 1.0 - distance / policy.max_distance_km)
    total = (
        weights.qualification * nd.qualification
        + weights.distance * distance_score
        + weights.load * nd.load_score
        + weights.rating * nd.rating_score
    )
    return Evaluation(
        round(total, SCORE_DECIMALS),
        nd.qualification,
        distance_score,
        nd.load_score,
        nd.rating_score,
        distance,
        source,
        position,
        nd.busy,
        nd.rating_used,
    )


Scored = tuple[tuple[float, float, str], TechnicianProfile, Evaluation]


def rank_by_scan(
    technicians: Iterable[TechnicianProfile], ctx: ScoringContext, limit: int | None
) -> list[RankedCandidate]:
    scored: list[Scored] = []
    for tech in technicians:
        if not exclusion_reasons(tech, ctx):
            ev = evaluate(tech, ctx)
            scored.append((ev.sort_key(tech.person_id), tech, ev))
    return finish_ranking(scored, ctx, limit)


def finish_ranking(scored: list[Scored], ctx: ScoringContext, limit: int | None) -> list[RankedCandidate]:
    """Sort best first, keep `limit`, and build the breakdowns of the survivors only."""
    scored.sort(key=lambda item: item[0])
    if limit is not None:
        scored = scored[:limit]
    return [build_candidate(rank, tech, ev, ctx) for rank, (_, tech, ev) in enumerate(scored, start=1)]


def build_candidate(rank: int, tech: TechnicianProfile, ev: Evaluation, ctx: ScoringContext) -> RankedCandidate:
    """Full breakdown and the "why you" sentence; only built for the candidates returned."""
    policy = ctx.policy
    w = policy.weights
    category = ctx.request.category
    has_skill = category in tech.skills
    held = sorted(ctx.qualifying & tech.certifications)
    lacking = sorted(ctx.qualifying - tech.certifications)

    qual_parts = [f"{'具备' if has_skill else '未登记'}{category}技能"]
    if held:
        qual_parts.append(f"持有{'、'.join(held)}")
    if lacking:
        qual_parts.append(f"缺{'、'.join(lacking)}")
    qual_detail = "，".join(qual_parts)

    site_label = SITE_LABELS[ctx.site_source]
    if ev.distance_km is None:
        dist_detail = "无法计算距离（" + ("技师位置未知" if ctx.site is not None else "工单无地点") + "）"
    else:
        dist_detail = f"距{site_label} {ev.distance_km:.1f} 公里（按{POSITION_LABELS[ev.position_source]}）"

    load_detail = f"在办 {tech.open_load}/{tech.max_load} 单，近3日接单 {tech.accepted_last_3_days} 单"
    rating_detail = f"评分 {tech.rating:.1f}" if tech.rating is not None else f"新人暂无评分，按 {ev.rating_used:g} 计"

    components = (
        ScoreComponent(
            "qualification",
            "资质匹配",
            ev.qualification,
            ev.qualification,
            w.qualification,
            w.qualification * ev.qualification,
            qual_detail,
        ),
        ScoreComponent(
            "distance",
            "距离",
            ev.distance_km,
            ev.distance_score,
            w.distance,
            w.distance * ev.distance_score,
            dist_detail,
        ),
        ScoreComponent("load", "当前负载", ev.busy, ev.load_score, w.load, w.load * ev.load_score, load_detail),
        ScoreComponent(
            "rating", "评分", tech.rating, ev.rating_score, w.rating, w.rating * ev.rating_score, rating_detail
        ),
    )
    why = (
        f"推荐理由：{qual_detail}；{dist_detail}；{load_detail}；{rating_detail}。"
        f"综合得分 {ev.score:.3f}（"
        + "，".join(f"{c.label} {c.normalised:.2f}×{c.weight:.0%}" for c in components)
        + "）"
    )
    return RankedCandidate(
        rank=rank,
        person_id=tech.person_id,
        name=tech.name,
        score=ev.score,
        components=components,
        distance_km=ev.distance_km,
        position_source=ev.position_source,
        position_used=ev.position,
        site_source=ctx.site_source,
        site_used=ctx.site,
        why=why,
    )
