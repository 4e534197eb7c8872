"""Positions and great-circle distance for dispatch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import InvalidInput

# IUGG mean Earth radius; the haversine error against the ellipsoid is < 0.5 %.
EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """WGS-84 latitude/longitude in degrees."""

    lat: float
    lng: float

    def __post_init__(self) -> None:
        # `not (a <= x <= b)` also rejects NaN.
        if not (-90.0 <= self.lat <= 90.0):
            raise InvalidInput(f"纬度超出范围（-90~90）：{self.lat}", lat=self.lat)
        if not (-180.0 <= self.lng <= 180.0):
            raise InvalidInput(f"经度超出范围（-180~180）：{self.lng}", lng=self.lng)

    def to_list(self) -> list[float]:
        return [self.lat, self.lng]


def haversine_km(a_lat: float, a_lng: float, b_lat: float, b_lng: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    phi1 = math.radians(a_lat)
    phi2 = math.radians(b_lat)
    h = (
        math.sin((phi2 - phi1) / 2.0) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(b_lng - a_lng) / 2.0) ** 2
    )
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def distance_km(a: GeoPoint, b: GeoPoint) -> float:
    return haversine_km(a.lat, a.lng, b.lat, b.lng)
