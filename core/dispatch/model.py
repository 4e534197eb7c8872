"""Dispatch inputs and outputs: technician profiles, requests, ranked candidates, exclusions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.dispatch.geo import GeoPoint
from core.errors import InvalidInput


class PositionSource(StrEnum):
    LAST_POSITION = "last_position"  # fresh location message / check-in
    HOME_STORE = "home_store"  # no fresh position: the technician's home store
    UNKNOWN = "unknown"  # neither is known: distance scores 0


class SiteSource(StrEnum):
    SITE = "site"  # the customer's / asset's position
    STORE = "store"  # the store the ticket belongs to
    UNKNOWN = "unknown"  # no position at all: nobody gets distance points


POSITION_LABELS = {
    PositionSource.LAST_POSITION: "实时位置",
    PositionSource.HOME_STORE: "常驻门店",
    PositionSource.UNKNOWN: "位置未知",
}
SITE_LABELS = {SiteSource.SITE: "现场", SiteSource.STORE: "门店", SiteSource.UNKNOWN: "未知地点"}


@dataclass(frozen=True, slots=True)
class TechnicianProfile:
    """What dispatch knows about one technician at decision time (a snapshot, never mutated)."""

    person_id: str
    name: str
    certifications: frozenset[str] = frozenset()
    # Category names (机械类, 电控类, ...) and finer tags; only the category name counts for matching.
    skills: frozenset[str] = frozenset()
    home_store: str | None = None
    home_position: GeoPoint | None = None
    last_position: GeoPoint | None = None
    last_position_at: datetime | None = None  # aware UTC
    on_duty: bool = True
    open_load: int = 0
    accepted_last_3_days: int = 0
    rating: float | None = None  # 0-5 from customer sign-offs; None = new, no rating yet
    max_load: int = 5
    excluded_categories: frozenset[str] = frozenset()  # categories this person must not be offered

    def __post_init__(self) -> None:
        if not self.person_id:
            raise InvalidInput("技师工号不能为空", field="person_id")
        if self.max_load < 1:
            raise InvalidInput(f"最大负载至少为 1：{self.max_load}", field="max_load", person_id=self.person_id)
        if self.open_load < 0 or self.accepted_last_3_days < 0:
            raise InvalidInput("单量不能为负数", field="open_load", person_id=self.person_id)
        if self.rating is not None and not (0.0 <= self.rating <= 5.0):
            raise InvalidInput(f"评分必须在 0~5 之间：{self.rating}", field="rating", person_id=self.person_id)
        if self.last_position is not None and self.last_position_at is None:
            raise InvalidInput("实时位置缺少时间", field="last_position_at", person_id=self.person_id)
        if self.last_position_at is not None and self.last_position_at.tzinfo is None:
            raise InvalidInput("位置时间必须带时区", field="last_position_at", person_id=self.person_id)


@dataclass(frozen=True, slots=True)
class DispatchRequest:
    ticket_number: str
    category: str
    site: GeoPoint | None = None  # customer / asset position
    store: GeoPoint | None = None  # fallback when the site is unknown
    excluded_person_ids: frozenset[str] = frozenset()  # already declined or let the offer expire


@dataclass(frozen=True, slots=True)
class ExclusionReason:
    code: str  # excluded_id | off_duty | at_capacity | missing_certification | category_excluded | specialist
    message: str  # Chinese, for the dry run


@dataclass(frozen=True, slots=True)
class Exclusion:
    person_id: str
    name: str
    reasons: tuple[ExclusionReason, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
        }


@dataclass(frozen=True, slots=True)
class ScoreComponent:
    """One weighted part of the score. contribution = weight * normalised."""

    key: str  # qualification | distance | load | rating
    label: str  # Chinese
    raw: float | None  # the measured value (km, busy ratio, rating...); None when unknown
    normalised: float  # 0..1, higher is better
    weight: float
    contribution: float
    detail: str  # Chinese description of the raw value

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "raw": self.raw,
            "normalised": self.normalised,
            "weight": self.weight,
            "contribution": self.contribution,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class RankedCandidate:
    rank: int  # 1-based
    person_id: str
    name: str
    score: float  # sum of contributions, rounded to 9 decimals (the ranking key)
    components: tuple[ScoreComponent, ...]
    distance_km: float | None
    position_source: PositionSource
    position_used: GeoPoint | None
    site_source: SiteSource
    site_used: GeoPoint | None
    why: str  # Chinese "why you" sentence for the offer card

    def component(self, key: str) -> ScoreComponent:
        for c in self.components:
            if c.key == key:
                return c
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """Full breakdown for audit payloads and the dry run."""
        return {
            "rank": self.rank,
            "person_id": self.person_id,
            "name": self.name,
            "score": self.score,
            "components": [c.to_dict() for c in self.components],
            "distance_km": self.distance_km,
            "position_source": self.position_source.value,
            "position_used": self.position_used.to_list() if self.position_used else None,
            "site_source": self.site_source.value,
            "site_used": self.site_used.to_list() if self.site_used else None,
            "why": self.why,
        }
