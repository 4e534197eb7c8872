"""DispatchPolicy validation and JSON round trip."""

from __future__ import annotations

import json

import pytest

from core.dispatch.engine import DispatchPolicy, DispatchPolicyError, DispatchWeights
from core.errors import InvalidInput


def test_defaults_match_the_issue() -> None:
    policy = DispatchPolicy()
    assert policy.weights.to_dict() == {"qualification": 0.4, "distance": 0.3, "load": 0.2, "rating": 0.1}
    assert policy.required_for("电控类") == frozenset({"OBD认证"})
    assert policy.required_for("机械类") == frozenset()
    assert policy.specialist_exclusions["机械类"] == frozenset({"电控类"})


def test_json_round_trip() -> None:
    policy = DispatchPolicy(
        weights=DispatchWeights(0.5, 0.25, 0.15, 0.1),
        required_certifications={"空调类": {"空调R134a操作证"}},  # plain sets are normalised
        preferred_certifications={"电控类": frozenset({"高压电工证"})},
        max_distance_km=30,
        position_max_age_s=900,
    )
    text = policy.to_json()
    assert json.loads(text)["required_certifications"] == {"空调类": ["空调R134a操作证"]}
    again = DispatchPolicy.from_json(text)
    assert again == policy
    assert again.required_for("空调类") == frozenset({"空调R134a操作证"})
    assert DispatchPolicy.from_json("{}") == DispatchPolicy()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"weights": {"qualification": 0.5, "distance": 0.3, "load": 0.2, "rating": 0.1}}, "weights"),
        ({"weights": {"qualification": 1.2, "distance": -0.2, "load": 0.0, "rating": 0.0}}, "weights.distance"),
        ({"weights": {"qualification": "0.4"}}, "weights.qualification"),
        ({"weights": {"quality": 1.0}}, "weights"),
        ({"max_distance_km": 0}, "max_distance_km"),
        ({"max_distance_km": True}, "max_distance_km"),
        ({"position_max_age_s": -1}, "position_max_age_s"),
        ({"new_technician_rating": 6}, "new_technician_rating"),
        ({"qualification_skill_share": 1.5}, "qualification_skill_share"),
        ({"recent_jobs_cap": 0}, "recent_jobs_cap"),
        ({"required_certifications": {"电控类": "OBD认证"}}, "required_certifications"),
        ({"required_certifications": {"": ["OBD认证"]}}, "required_certifications"),
        ({"specialist_exclusions": {"机械类": [""]}}, "specialist_exclusions"),
        ({"max_distanse_km": 10}, "max_distanse_km"),
    ],
)
def test_invalid_policies_are_rejected_with_the_field(data: dict, field: str) -> None:
    with pytest.raises(DispatchPolicyError) as err:
        DispatchPolicy.from_dict(data)
    assert err.value.data["field"] == field
    assert isinstance(err.value, InvalidInput)
    assert err.value.user_message  # Chinese message for the admin


def test_weights_must_sum_to_one_in_code_too() -> None:
    with pytest.raises(DispatchPolicyError, match="之和必须为 1"):
        DispatchWeights(0.4, 0.3, 0.2, 0.2)
    DispatchWeights(0.1, 0.2, 0.3, 0.4)  # float noise within tolerance is fine


def test_invalid_json_text() -> None:
    with pytest.raises(DispatchPolicyError):
        DispatchPolicy.from_json("{not json")
    with pytest.raises(DispatchPolicyError):
        DispatchPolicy.from_json("[1, 2]")


def test_describe_lists_weights_and_filters() -> None:
    text = DispatchPolicy().describe()
    assert "资质匹配 40%" in text and "距离 30%" in text and "当前负载 20%" in text and "评分 10%" in text
    assert "电控类 必须持有：OBD认证" in text
    assert "机械类 不派给只会 电控类 的技师" in text
