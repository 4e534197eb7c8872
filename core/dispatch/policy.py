"""Dispatch policy: weights, per-category filters and scoring knobs, with a JSON round trip.

The policy is plain data so that admins can edit it (派单规则) and every audit event can
carry the exact policy a decision was made under.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from core.errors import InvalidInput

ELECTRICAL = "电控类"
MECHANICAL = "机械类"
WEIGHT_SUM_TOLERANCE = 1e-6
MIN_OFFER_TIMEOUT_S = 10.0
MAX_OFFER_TIMEOUT_S = 24 * 3600.0


class DispatchPolicyError(InvalidInput):
    """The policy is invalid; `data["field"]` names the offending setting."""


@dataclass(frozen=True, slots=True)
class DispatchWeights:
    qualification: float = 0.40
    distance: float = 0.30
    load: float = 0.20
    rating: float = 0.10

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise DispatchPolicyError(f"权重 {f.name} 必须是数字", field=f"weights.{f.name}", value=value)
            if value < 0:
                raise DispatchPolicyError(f"权重 {f.name} 不能为负数：{value}", field=f"weights.{f.name}", value=value)
        total = self.qualification + self.distance + self.load + self.rating
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise DispatchPolicyError(f"四项权重之和必须为 1（当前 {total:.4f}）", field="weights", total=total)

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _default_required() -> dict[str, frozenset[str]]:
    return {ELECTRICAL: frozenset({"OBD认证"})}


def _default_specialists() -> dict[str, frozenset[str]]:
    # 机械类 hides technicians whose skills are only electrical (seed: 屏蔽电子技师).
    return {MECHANICAL: frozenset({ELECTRICAL})}


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """How candidates are filtered and scored. See core/dispatch/engine.py for the score definition.

    required_certifications: category -> certifications a technician must all hold (hard filter).
    preferred_certifications: category -> certifications that raise the qualification score.
    specialist_exclusions: category -> skill set; a technician whose (non-empty) skills all lie in
        that set is a specialist of another kind and is filtered out of the category.
    max_distance_km: distance at which the distance score reaches 0 (normalisation, not a filter).
    position_max_age_s: a last known position older than this falls back to the home store.
    qualification_skill_share: share of the qualification score given by the category skill;
        the rest comes from the category's certifications.
    recent_jobs_share / recent_jobs_cap: how much jobs accepted in the last 3 days weigh in the
        load score, and how many count as "fully busy".
    new_technician_rating: rating assumed for technicians without one (0-5).
    offer_timeout_s: how long an offered technician has to press 接单/拒单 before the offer
        expires, the next candidate gets it and the ticket is flagged 待复核.
    """

    weights: DispatchWeights = field(default_factory=DispatchWeights)
    required_certifications: dict[str, frozenset[str]] = field(default_factory=_default_required)
    preferred_certifications: dict[str, frozenset[str]] = field(default_factory=dict)
    specialist_exclusions: dict[str, frozenset[str]] = field(default_factory=_default_specialists)
    max_distance_km: float = 50.0
    position_max_age_s: float = 3600.0
    qualification_skill_share: float = 0.6
    recent_jobs_share: float = 0.25
    recent_jobs_cap: int = 15
    new_technician_rating: float = 3.5
    offer_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        _require(
            self.max_distance_km > 0 and math.isfinite(self.max_distance_km),
            "max_distance_km",
            "评分距离上限必须为正数",
        )
        _require(self.position_max_age_s >= 0, "position_max_age_s", "位置有效期不能为负数")
        _require(
            0.0 <= self.qualification_skill_share <= 1.0,
            "qualification_skill_share",
            "技能占资质分的比例必须在 0~1 之间",
        )
        _require(0.0 <= self.recent_jobs_share <= 1.0, "recent_jobs_share", "近3日接单占负载分的比例必须在 0~1 之间")
        _require(self.recent_jobs_cap >= 1, "recent_jobs_cap", "近3日接单上限至少为 1")
        _require(0.0 <= self.new_technician_rating <= 5.0, "new_technician_rating", "新人默认评分必须在 0~5 之间")
        _require(
            MIN_OFFER_TIMEOUT_S <= self.offer_timeout_s <= MAX_OFFER_TIMEOUT_S,
            "offer_timeout_s",
            f"接单时限必须在 {MIN_OFFER_TIMEOUT_S:g} 秒到 {MAX_OFFER_TIMEOUT_S / 3600:g} 小时之间",
        )
        for name in ("required_certifications", "preferred_certifications", "specialist_exclusions"):
            # Normalise sets/lists to frozensets so callers may pass plain literals.
            object.__setattr__(self, name, _sets_from_json(name, getattr(self, name)))

    def required_for(self, category: str) -> frozenset[str]:
        return self.required_certifications.get(category, frozenset())

    def qualifying_certifications(self, category: str) -> frozenset[str]:
        """Certifications that count towards the qualification score of `category`."""
        return self.required_for(category) | self.preferred_certifications.get(category, frozenset())

    def to_dict(self) -> dict[str, Any]:
        def sets(mapping: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
            return {k: sorted(v) for k, v in sorted(mapping.items())}

        return {
            "weights": self.weights.to_dict(),
            "required_certifications": sets(self.required_certifications),
            "preferred_certifications": sets(self.preferred_certifications),
            "specialist_exclusions": sets(self.specialist_exclusions),
            "max_distance_km": self.max_distance_km,
            "position_max_age_s": self.position_max_age_s,
            "qualification_skill_share": self.qualification_skill_share,
            "recent_jobs_share": self.recent_jobs_share,
            "recent_jobs_cap": self.recent_jobs_cap,
            "new_technician_rating": self.new_technician_rating,
            "offer_timeout_s": self.offer_timeout_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DispatchPolicy:
        """Missing keys take defaults; unknown keys are an error (a typo must not be ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DispatchPolicyError(f"未知的派单规则配置项：{'、'.join(unknown)}", field=unknown[0])
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "weights":
                if not isinstance(value, Mapping):
                    raise DispatchPolicyError("weights 必须是对象", field="weights")
                unknown_w = sorted(set(value) - {f.name for f in fields(DispatchWeights)})
                if unknown_w:
                    raise DispatchPolicyError(f"未知的权重项：{'、'.join(unknown_w)}", field="weights")
                kwargs[key] = DispatchWeights(**value)
            elif key in ("required_certifications", "preferred_certifications", "specialist_exclusions"):
                kwargs[key] = _sets_from_json(key, value)
            else:
                kwargs[key] = _number_from_json(key, value)
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DispatchPolicy:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DispatchPolicyError(f"派单规则不是合法的 JSON：{exc.msg}", field=None) from exc
        if not isinstance(data, dict):
            raise DispatchPolicyError("派单规则必须是 JSON 对象", field=None)
        return cls.from_dict(data)

    def describe(self) -> str:
        """Chinese text for the 派单规则 command."""
        w = self.weights
        lines = [
            "派单规则",
            f"权重：资质匹配 {w.qualification:.0%}，距离 {w.distance:.0%}，当前负载 {w.load:.0%}，评分 {w.rating:.0%}",
            "硬性条件：在岗；当前在办单量低于个人上限；未拒单/超时过本单",
        ]
        for category, certs in sorted(self.required_certifications.items()):
            lines.append(f"· {category} 必须持有：{'、'.join(sorted(certs))}")
        for category, skills in sorted(self.specialist_exclusions.items()):
            lines.append(f"· {category} 不派给只会 {'、'.join(sorted(skills))} 的技师")
        for category, certs in sorted(self.preferred_certifications.items()):
            lines.append(f"· {category} 优先持有：{'、'.join(sorted(certs))}")
        lines.append(
            f"距离：按现场（无现场位置时按门店）直线距离计，{self.max_distance_km:g} 公里及以上记 0 分；"
            f"实时位置超过 {self.position_max_age_s / 60:g} 分钟未更新时改用常驻门店位置"
        )
        lines.append(f"新人无评分时按 {self.new_technician_rating:g} 分计；同分按距离近、工号小优先")
        lines.append(
            f"接单时限：{format_seconds(self.offer_timeout_s)}内未接单/拒单即自动改派下一位，首派标记「待复核」并通知主管"
        )
        return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    """15 分钟, 90 秒, 2 小时 — for admins reading the rules."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} 小时"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} 分钟"
    return f"{seconds:g} 秒"


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise DispatchPolicyError(message, field=name)


def _sets_from_json(key: str, value: Any) -> dict[str, frozenset[str]]:
    if not isinstance(value, Mapping):
        raise DispatchPolicyError(f"{key} 必须是对象（类别 → 列表）", field=key)
    out: dict[str, frozenset[str]] = {}
    for category, items in value.items():
        if not isinstance(category, str) or not category.strip():
            raise DispatchPolicyError(f"{key} 的类别名称不能为空", field=key)
        if isinstance(items, str) or not isinstance(items, list | tuple | set | frozenset):
            raise DispatchPolicyError(f"{key}.{category} 必须是列表", field=key)
        if not all(isinstance(v, str) and v.strip() for v in items):
            raise DispatchPolicyError(f"{key}.{category} 只能包含非空文字", field=key)
        out[category] = frozenset(items)
    return out


def _number_from_json(key: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DispatchPolicyError(f"{key} 必须是数字", field=key, value=value)
    return value
