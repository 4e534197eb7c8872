"""Smart dispatch: who gets a new ticket, and why.

Pure functions over snapshots; storage, offers, timers and cards live elsewhere.

Hard filters (a technician failing any is excluded; `explain_exclusions` lists every reason):
  * not in the request's `excluded_person_ids` (declined or let the offer expire);
  * on duty;
  * open load below their own `max_load`;
  * holds every certification the policy requires for the category (电控类 → OBD认证);
  * the category is not in their `excluded_categories`;
  * not a specialist of another kind: with `specialist_exclusions[category] = S`, a technician
    whose non-empty skills all lie in S is excluded (机械类 → S = {电控类}: electrical-only).

Score (each part normalised to 0..1, higher is better; total = Σ weight × part, rounded to 9
decimals; default weights 0.40 / 0.30 / 0.20 / 0.10):
  * qualification: let P = required ∪ preferred certifications of the category.
    P empty:  q = 1 if the category is in the technician's skills else 0.
    P given:  q = s·skill + (1 − s)·|P ∩ held| / |P|, s = `qualification_skill_share` (0.6).
    So for 电控类 (P = {OBD认证}, held by every candidate): 1.0 with the 电控类 skill, 0.4 without.
  * distance: d = great-circle km from the site (else the ticket's store) to the technician's
    last position if younger than `position_max_age_s`, else their home store;
    score = max(0, 1 − d / max_distance_km). Unknown site or technician position: 0.
  * load: busy = (1 − r)·open_load / max_load + r·min(accepted_last_3_days / cap, 1),
    r = `recent_jobs_share` (0.25), cap = `recent_jobs_cap` (15); score = 1 − busy.
  * rating: rating / 5; no rating yet → `new_technician_rating` (3.5) / 5.

Ties: higher score, then shorter distance (unknown last), then smaller person_id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from core.dispatch.geo import GeoPoint, distance_km, haversine_km
from core.dispatch.index import CandidateIndex, is_dispatchable
from core.dispatch.model import (
    DispatchRequest,
    Exclusion,
    ExclusionReason,
    PositionSource,
    RankedCandidate,
    ScoreComponent,
    SiteSource,
    TechnicianProfile,
)
from core.dispatch.policy import DispatchPolicy, DispatchPolicyError, DispatchWeights
from core.dispatch.scoring import ScoringContext, build_candidate, evaluate, exclusion_reasons, rank_by_scan

__all__ = [
    "CandidateIndex",
    "DispatchPolicy",
    "DispatchPolicyError",
    "DispatchRequest",
    "DispatchWeights",
    "Exclusion",
    "ExclusionReason",
    "GeoPoint",
    "PositionSource",
    "RankedCandidate",
    "ScoreComponent",
    "SiteSource",
    "TechnicianProfile",
    "assess",
    "distance_km",
    "explain_exclusions",
    "haversine_km",
    "is_dispatchable",
    "rank_candidates",
]


def rank_candidates(
    request: DispatchRequest,
    technicians: Iterable[TechnicianProfile] | CandidateIndex,
    policy: DispatchPolicy,
    now: datetime,
    *,
    limit: int | None = None,
) -> list[RankedCandidate]:
    """Eligible technicians, best first, with full breakdowns; at most `limit` of them.

    Given a CandidateIndex, only the cells that can still reach the top `limit` are visited
    (pass a small `limit` for decisions; None visits the whole bucket). The result is the
    same as the full scan over the same technicians.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    ctx = ScoringContext.build(request, policy, now)
    if isinstance(technicians, CandidateIndex):
        return technicians.search(ctx, limit)
    return rank_by_scan(technicians, ctx, limit)


def explain_exclusions(
    request: DispatchRequest,
    technicians: Iterable[TechnicianProfile] | CandidateIndex,
    policy: DispatchPolicy,
    now: datetime,
) -> list[Exclusion]:
    """Every filtered-out technician with all their reasons, by person_id (for `test dispatch`)."""
    ctx = ScoringContext.build(request, policy, now)
    pool = technicians.profiles() if isinstance(technicians, CandidateIndex) else technicians
    out = [Exclusion(t.person_id, t.name, reasons) for t in pool if (reasons := exclusion_reasons(t, ctx))]
    out.sort(key=lambda e: e.person_id)
    return out


def assess(
    request: DispatchRequest, tech: TechnicianProfile, policy: DispatchPolicy, now: datetime
) -> tuple[RankedCandidate, tuple[ExclusionReason, ...]]:
    """One technician's full breakdown whether or not the hard filters let them through, with the
    reasons they would have been filtered out (a supervisor's manual reassignment is audited so)."""
    ctx = ScoringContext.build(request, policy, now)
    return build_candidate(1, tech, evaluate(tech, ctx), ctx), exclusion_reasons(tech, ctx)
