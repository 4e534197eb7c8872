"""Customer pages: tracking, sign-off (issue 21, bot/web/customer/)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class CustomerPageSettings(BaseSettings):
    tracking_link_days_after_close: float = Field(
        default=30.0, gt=0, description="A ticket's tracking link stops working this many days after it closed.")
    map_tile_url: str = Field(
        default="", description="Leaflet tile URL template for the maps, e.g. https://tile.example.com/{z}/{x}/{y}"
                                ".png; empty: markers and distances without tiles.")
