"""Hard filters, score math, positions and tie-breaking of core.dispatch.engine."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core.dispatch.engine import (
    DispatchPolicy,
    DispatchRequest,
    GeoPoint,
    PositionSource,
    SiteSource,
    TechnicianProfile,
    explain_exclusions,
    haversine_km,
    rank_candidates,
)
from core.errors import InvalidInput

NOW = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)
SITE = GeoPoint(31.2304, 121.4737)  # 上海人民广场
POLICY = DispatchPolicy()


def tech(pid: str, **kw: object) -> TechnicianProfile:
    base: dict[str, object] = {
        "person_id": pid,
        "name": f"技师{pid}",
        "skills": frozenset({"机械类", "电控类"}),
        "certifications": frozenset({"OBD认证"}),
        "home_position": SITE,
        "rating": 4.0,
    }
    base.update(kw)
    return TechnicianProfile(**base)  # type: ignore[arg-type]


def request(category: str = "机械类", **kw: object) -> DispatchRequest:
    base: dict[str, object] = {"ticket_number": "WO-1", "category": category, "site": SITE}
    base.update(kw)
    return DispatchRequest(**base)  # type: ignore[arg-type]


def ids(candidates: list) -> list[str]:
    return [c.person_id for c in candidates]


def reason_codes(exclusions: list, pid: str) -> set[str]:
    return {r.code for e in exclusions if e.person_id == pid for r in e.reasons}


# --- hard filters -----------------------------------------------------------------------


def test_electrical_requires_obd_certification() -> None:
    techs = [tech("A"), tech("B", certifications=frozenset({"空调R134a操作证"}))]
    assert ids(rank_candidates(request("电控类"), techs, POLICY, NOW)) == ["A"]
    exclusions = explain_exclusions(request("电控类"), techs, POLICY, NOW)
    assert reason_codes(exclusions, "B") == {"missing_certification"}
    assert "OBD认证" in exclusions[0].reasons[0].message
    # 机械类 has no required certification: both are candidates.
    assert sorted(ids(rank_candidates(request("机械类"), techs, POLICY, NOW))) == ["A", "B"]


def test_off_duty_full_load_and_excluded_ids_are_filtered_with_reasons() -> None:
    techs = [
        tech("A"),
        tech("B", on_duty=False),
        tech("C", open_load=5, max_load=5),
        tech("D"),
        tech("E", on_duty=False, open_load=3, max_load=3),
    ]
    req = request(excluded_person_ids=frozenset({"D"}))
    assert ids(rank_candidates(req, techs, POLICY, NOW)) == ["A"]
    exclusions = explain_exclusions(req, techs, POLICY, NOW)
    assert [e.person_id for e in exclusions] == ["B", "C", "D", "E"]
    assert reason_codes(exclusions, "B") == {"off_duty"}
    assert reason_codes(exclusions, "C") == {"at_capacity"}
    assert reason_codes(exclusions, "D") == {"excluded_id"}
    assert reason_codes(exclusions, "E") == {"off_duty", "at_capacity"}  # every reason, not the first


def test_one_below_max_load_is_still_a_candidate() -> None:
    assert ids(rank_candidates(request(), [tech("A", open_load=4, max_load=5)], POLICY, NOW)) == ["A"]


def test_mechanical_excludes_electrical_only_technicians() -> None:
    techs = [
        tech("ELEC", skills=frozenset({"电控类"})),
        tech("BOTH", skills=frozenset({"电控类", "机械类"})),
        tech("NONE", skills=frozenset()),  # no skills recorded: not a specialist, just unqualified
    ]
    assert sorted(ids(rank_candidates(request("机械类"), techs, POLICY, NOW))) == ["BOTH", "NONE"]
    assert reason_codes(explain_exclusions(request("机械类"), techs, POLICY, NOW), "ELEC") == {"specialist"}
    # The electrical-only technician is fine for 电控类.
    assert "ELEC" in ids(rank_candidates(request("电控类"), techs, POLICY, NOW))


def test_technician_excluded_categories() -> None:
    techs = [tech("A", excluded_categories=frozenset({"机械类"})), tech("B")]
    assert ids(rank_candidates(request("机械类"), techs, POLICY, NOW)) == ["B"]
    assert reason_codes(explain_exclusions(request("机械类"), techs, POLICY, NOW), "A") == {"category_excluded"}


def test_required_certifications_are_configurable_per_category() -> None:
    policy = DispatchPolicy(required_certifications={"空调类": frozenset({"空调R134a操作证"})})
    techs = [tech("A"), tech("B", certifications=frozenset({"空调R134a操作证"}))]
    assert ids(rank_candidates(request("空调类"), techs, policy, NOW)) == ["B"]
    # 电控类 no longer requires OBD under this policy.
    assert sorted(ids(rank_candidates(request("电控类"), techs, policy, NOW))) == ["A", "B"]


# --- score math -------------------------------------------------------------------------


def test_breakdown_math_by_hand() -> None:
    # 电控类: P = {OBD认证}; skill share 0.6 -> q = 0.6*1 + 0.4*1 = 1.0
    position = GeoPoint(31.2304, 121.5737)  # 0.1° east
    t = tech(
        "A",
        home_position=position,
        open_load=1,
        max_load=4,
        accepted_last_3_days=6,
        rating=4.5,
    )
    [c] = rank_candidates(request("电控类"), [t], POLICY, NOW)
    d = haversine_km(SITE.lat, SITE.lng, position.lat, position.lng)
    assert 9.4 < d < 9.6  # 0.1° of longitude at 31°N
    busy = 0.75 * (1 / 4) + 0.25 * (6 / 15)
    expected = {
        "qualification": (1.0, 0.40),
        "distance": (1 - d / 50, 0.30),
        "load": (1 - busy, 0.20),
        "rating": (4.5 / 5, 0.10),
    }
    for key, (normalised, weight) in expected.items():
        comp = c.component(key)
        assert comp.normalised == pytest.approx(normalised)
        assert comp.weight == weight
        assert comp.contribution == pytest.approx(normalised * weight)
    assert c.component("distance").raw == pytest.approx(d)
    assert c.component("load").raw == pytest.approx(busy)
    assert c.score == pytest.approx(sum(n * w for n, w in expected.values()), abs=1e-9)
    assert c.distance_km == pytest.approx(d)
    assert c.position_source is PositionSource.HOME_STORE
    assert c.site_source is SiteSource.SITE
    assert "推荐理由" in c.why and "OBD认证" in c.why and "9.5 公里" in c.why and "常驻门店" in c.why
    payload = c.to_dict()
    assert [p["key"] for p in payload["components"]] == ["qualification", "distance", "load", "rating"]


def test_qualification_partial_without_skill_and_preferred_certification() -> None:
    policy = DispatchPolicy(preferred_certifications={"空调类": frozenset({"空调R134a操作证", "高压电工证"})})
    t = tech("A", skills=frozenset({"空调类"}), certifications=frozenset({"空调R134a操作证"}))
    [c] = rank_candidates(request("空调类"), [t], policy, NOW)
    assert c.component("qualification").normalised == pytest.approx(0.6 + 0.4 * 0.5)
    [c] = rank_candidates(request("空调类"), [replace(t, skills=frozenset())], policy, NOW)
    assert c.component("qualification").normalised == pytest.approx(0.4 * 0.5)
    # No certifications configured for the category: qualification is the skill match alone.
    [c] = rank_candidates(request("机械类"), [tech("B", skills=frozenset({"电控类", "发动机"}))], POLICY, NOW)
    assert c.component("qualification").normalised == 0.0


def test_weights_change_the_winner() -> None:
    near_busy = tech("NEAR", home_position=SITE, open_load=4, max_load=5)
    far_idle = tech("FAR", home_position=GeoPoint(31.2304, 121.5737), open_load=0)  # ~9.5 km
    assert ids(rank_candidates(request(), [near_busy, far_idle], POLICY, NOW))[0] == "FAR"
    distance_heavy = DispatchPolicy.from_dict(
        {"weights": {"qualification": 0.1, "distance": 0.8, "load": 0.05, "rating": 0.05}}
    )
    assert ids(rank_candidates(request(), [near_busy, far_idle], distance_heavy, NOW))[0] == "NEAR"


def test_new_technician_rating_default_and_far_away_distance_is_zero() -> None:
    t = tech("A", rating=None, home_position=GeoPoint(39.9042, 116.4074))  # 北京, > 1000 km
    [c] = rank_candidates(request(), [t], POLICY, NOW)
    assert c.component("rating").normalised == pytest.approx(3.5 / 5)
    assert c.component("rating").raw is None
    assert "新人" in c.why
    assert c.component("distance").normalised == 0.0
    assert c.distance_km is not None and c.distance_km > 1000


def test_limit_keeps_the_best() -> None:
    techs = [tech(f"T{i}", open_load=i % 5) for i in range(10)]
    full = rank_candidates(request(), techs, POLICY, NOW)
    top3 = rank_candidates(request(), techs, POLICY, NOW, limit=3)
    assert ids(top3) == ids(full)[:3]
    assert [c.rank for c in top3] == [1, 2, 3]
    with pytest.raises(ValueError):
        rank_candidates(request(), techs, POLICY, NOW, limit=0)


# --- positions --------------------------------------------------------------------------


def test_fresh_last_position_wins_and_stale_falls_back_to_home_store() -> None:
    home = GeoPoint(31.2304, 121.9737)  # ~47 km east
    t = tech("A", home_position=home, last_position=SITE, last_position_at=NOW - timedelta(minutes=30))
    [fresh] = rank_candidates(request(), [t], POLICY, NOW)
    assert fresh.position_source is PositionSource.LAST_POSITION
    assert fresh.distance_km == pytest.approx(0.0)
    assert "实时位置" in fresh.why

    stale = replace(t, last_position_at=NOW - timedelta(hours=2))
    [c] = rank_candidates(request(), [stale], POLICY, NOW)
    assert c.position_source is PositionSource.HOME_STORE
    assert c.position_used == home
    assert c.distance_km == pytest.approx(haversine_km(SITE.lat, SITE.lng, home.lat, home.lng))
    # Exactly at the limit still counts as fresh.
    edge = replace(t, last_position_at=NOW - timedelta(seconds=POLICY.position_max_age_s))
    assert rank_candidates(request(), [edge], POLICY, NOW)[0].position_source is PositionSource.LAST_POSITION


def test_stale_without_home_is_unknown_and_scores_no_distance() -> None:
    t = tech("A", home_position=None, last_position=SITE, last_position_at=NOW - timedelta(days=1))
    [c] = rank_candidates(request(), [t], POLICY, NOW)
    assert c.position_source is PositionSource.UNKNOWN
    assert c.distance_km is None
    assert c.component("distance").normalised == 0.0


def test_site_falls_back_to_store_then_unknown() -> None:
    store = GeoPoint(30.2741, 120.1551)
    t = tech("A", home_position=store)
    [c] = rank_candidates(request(site=None, store=store), [t], POLICY, NOW)
    assert c.site_source is SiteSource.STORE
    assert c.distance_km == pytest.approx(0.0)
    [c] = rank_candidates(request(site=None, store=None), [t], POLICY, NOW)
    assert c.site_source is SiteSource.UNKNOWN
    assert c.distance_km is None and c.component("distance").contribution == 0.0


def test_haversine_known_distance() -> None:
    # 上海人民广场 → 杭州武林广场 is about 165 km as the crow flies.
    assert 160 < haversine_km(31.2304, 121.4737, 30.2741, 120.1551) < 170
    assert haversine_km(0, 179.9, 0, -179.9) == pytest.approx(2 * math.pi * 6371.0088 * 0.2 / 360, rel=1e-6)


def test_bad_profiles_and_positions_are_rejected() -> None:
    with pytest.raises(InvalidInput):
        GeoPoint(91, 0)
    with pytest.raises(InvalidInput):
        GeoPoint(0, float("nan"))
    with pytest.raises(InvalidInput):
        tech("A", rating=5.5)
    with pytest.raises(InvalidInput):
        tech("A", max_load=0)
    with pytest.raises(InvalidInput):
        tech("A", last_position=SITE, last_position_at=None)


# --- ties -------------------------------------------------------------------------------


def test_ties_break_by_distance_then_person_id_regardless_of_input_order() -> None:
    a = tech("B2", home_position=SITE)
    b = tech("A1", home_position=SITE)
    c = tech("C3", home_position=SITE)
    # Same score but farther: only possible with distance weight 0.
    policy = DispatchPolicy.from_dict({"weights": {"qualification": 0.5, "distance": 0.0, "load": 0.3, "rating": 0.2}})
    d = tech("A0", home_position=GeoPoint(31.3304, 121.4737))
    for order in ([a, b, c, d], [d, c, b, a], [c, a, d, b]):
        assert ids(rank_candidates(request(), order, policy, NOW)) == ["A1", "B2", "C3", "A0"]
        assert ids(rank_candidates(request(), order, POLICY, NOW))[:3] == ["A1", "B2", "C3"]


def test_float_noise_does_not_break_ties() -> None:
    # 0.1 + 0.2 != 0.3 in floats; scores are rounded so equal-by-design scores tie.
    policy = DispatchPolicy.from_dict({"weights": {"qualification": 0.1, "distance": 0.2, "load": 0.3, "rating": 0.4}})
    x = tech("X", rating=5.0, open_load=0)
    y = tech("Y", rating=5.0, open_load=0)
    cands = rank_candidates(request(), [y, x], policy, NOW)
    assert cands[0].score == cands[1].score
    assert ids(cands) == ["X", "Y"]
