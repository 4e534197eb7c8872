"""CandidateIndex must return exactly the full scan's ranking, before and after updates."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from core.dispatch.engine import (
    CandidateIndex,
    DispatchPolicy,
    DispatchRequest,
    GeoPoint,
    TechnicianProfile,
    explain_exclusions,
    rank_candidates,
)

NOW = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)
CATEGORIES = ("机械类", "电控类", "空调类", "钣金类")
# Dense cities, a remote spot, and awkward places (antimeridian, far north) for the grid maths.
CENTRES = [(31.23, 121.47), (30.27, 120.16), (32.06, 118.80), (43.8, 87.6), (0.0, 179.95), (78.2, 15.6)]


def _point(rng: random.Random, centre: tuple[float, float], spread: float) -> GeoPoint:
    lat = max(-90.0, min(90.0, rng.gauss(centre[0], spread)))
    lng = rng.gauss(centre[1], spread)
    lng = (lng + 180.0) % 360.0 - 180.0
    return GeoPoint(lat, lng)


def _random_tech(rng: random.Random, i: int) -> TechnicianProfile:
    centre = rng.choice(CENTRES)
    spread = rng.choice((0.05, 0.3, 1.0))
    has_last = rng.random() < 0.7
    has_home = rng.random() < 0.9
    max_load = rng.randint(1, 6)
    return TechnicianProfile(
        person_id=f"T{i:04d}",
        name=f"技师{i}",
        certifications=frozenset(c for c in ("OBD认证", "空调R134a操作证", "高压电工证") if rng.random() < 0.4),
        skills=frozenset(c for c in CATEGORIES if rng.random() < 0.35),
        home_position=_point(rng, centre, spread) if has_home else None,
        last_position=_point(rng, centre, spread) if has_last else None,
        last_position_at=NOW - timedelta(minutes=rng.uniform(0, 180)) if has_last else None,
        on_duty=rng.random() < 0.85,
        open_load=rng.randint(0, max_load),
        accepted_last_3_days=rng.randint(0, 20),
        # Coarse ratings and loads make exact score ties common, which exercises tie-breaking.
        rating=None if rng.random() < 0.15 else rng.choice((3.0, 4.0, 4.5, 5.0)),
        max_load=max_load,
        excluded_categories=frozenset({"钣金类"}) if rng.random() < 0.1 else frozenset(),
    )


def _random_request(rng: random.Random, i: int, pool: list[TechnicianProfile]) -> DispatchRequest:
    site = _point(rng, rng.choice(CENTRES), 0.5)
    roll = rng.random()
    return DispatchRequest(
        ticket_number=f"WO{i}",
        category=rng.choice(CATEGORIES),
        site=site if roll < 0.7 else None,
        store=site if roll < 0.9 else None,
        excluded_person_ids=frozenset(t.person_id for t in rng.sample(pool, 3)),
    )


POLICIES = [
    DispatchPolicy(),
    DispatchPolicy(
        preferred_certifications={"空调类": frozenset({"空调R134a操作证", "高压电工证"})},
        required_certifications={"电控类": frozenset({"OBD认证", "高压电工证"})},
        max_distance_km=500.0,
    ),
    DispatchPolicy.from_dict(
        {"weights": {"qualification": 0.1, "distance": 0.7, "load": 0.1, "rating": 0.1}, "max_distance_km": 5}
    ),
    DispatchPolicy.from_dict({"weights": {"qualification": 0.5, "distance": 0.0, "load": 0.5, "rating": 0.0}}),
]


def _summary(cands: list) -> list[tuple]:
    return [(c.rank, c.person_id, c.score, c.distance_km, c.position_source) for c in cands]


def test_index_matches_full_scan_on_random_data_with_updates() -> None:
    rng = random.Random(20260120)
    techs = {t.person_id: t for t in (_random_tech(rng, i) for i in range(600))}
    index = CandidateIndex(techs.values(), cell_deg=0.1)
    checked = 0
    for round_no in range(300):
        policy = POLICIES[round_no // 75]  # a policy change mid-way must invalidate cached rankings
        req = _random_request(rng, round_no, list(techs.values()))
        now = NOW + timedelta(minutes=rng.uniform(0, 120))  # positions go stale over time
        limit = rng.choice((1, 2, 5, 20, None))
        expected = rank_candidates(req, list(techs.values()), policy, now, limit=limit)
        got = rank_candidates(req, index, policy, now, limit=limit)
        assert _summary(got) == _summary(expected), (round_no, req, limit)
        assert [c.to_dict() for c in got] == [c.to_dict() for c in expected]
        checked += len(expected)
        # Churn: load/duty/position changes, removals and newcomers, applied to both sides.
        for _ in range(rng.randint(0, 6)):
            pid = rng.choice(list(techs))
            action = rng.random()
            if action < 0.1:
                del techs[pid]
                assert index.remove(pid) is not None
            elif action < 0.2:
                new = _random_tech(rng, 1000 + round_no)
                techs[new.person_id] = new
                index.upsert(new)
            else:
                t = techs[pid]
                t = replace(
                    t,
                    open_load=rng.randint(0, t.max_load),
                    on_duty=rng.random() < 0.85,
                    last_position=_point(rng, rng.choice(CENTRES), 0.3),
                    last_position_at=now,
                    certifications=t.certifications ^ {"OBD认证"} if rng.random() < 0.2 else t.certifications,
                )
                techs[pid] = t
                index.upsert(t)
        assert len(index) == len(techs)
    assert checked > 1000  # the comparison was not vacuous


def test_index_after_warm_up_and_with_a_fresh_equal_policy_object() -> None:
    rng = random.Random(7)
    techs = [_random_tech(rng, i) for i in range(300)]
    index = CandidateIndex(techs)
    index.warm(DispatchPolicy(), CATEGORIES, NOW)
    for i in range(50):
        req = _random_request(rng, i, techs)
        policy = DispatchPolicy.from_json(DispatchPolicy().to_json())  # equal, not identical
        assert _summary(rank_candidates(req, index, policy, NOW, limit=3)) == _summary(
            rank_candidates(req, techs, policy, NOW, limit=3)
        )


def test_index_tracks_duty_and_removal() -> None:
    site = GeoPoint(31.23, 121.47)
    a = TechnicianProfile("A", "甲", home_position=site, skills=frozenset({"机械类"}))
    b = TechnicianProfile("B", "乙", home_position=GeoPoint(31.3, 121.5), skills=frozenset({"机械类"}))
    index = CandidateIndex([a, b])
    req = DispatchRequest("WO-1", "机械类", site=site)
    policy = DispatchPolicy()
    assert [c.person_id for c in rank_candidates(req, index, policy, NOW, limit=1)] == ["A"]
    index.upsert(replace(a, on_duty=False))
    assert [c.person_id for c in rank_candidates(req, index, policy, NOW, limit=1)] == ["B"]
    # The dry run still sees the off-duty technician, with the reason.
    [excluded] = explain_exclusions(req, index, policy, NOW)
    assert excluded.person_id == "A" and excluded.reasons[0].code == "off_duty"
    index.remove("B")
    assert rank_candidates(req, index, policy, NOW) == []
    assert "B" not in index and index.get("A") is not None


def test_no_holder_of_a_required_certification_means_no_candidates() -> None:
    t = TechnicianProfile("A", "甲", home_position=GeoPoint(31.2, 121.4), skills=frozenset({"电控类"}))
    index = CandidateIndex([t])
    req = DispatchRequest("WO-1", "电控类", site=GeoPoint(31.2, 121.4))
    assert rank_candidates(req, index, DispatchPolicy(), NOW) == []
    index.upsert(replace(t, certifications=frozenset({"OBD认证"})))
    assert [c.person_id for c in rank_candidates(req, index, DispatchPolicy(), NOW)] == ["A"]
