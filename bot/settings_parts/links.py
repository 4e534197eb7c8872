"""Links sent to people (customer tracking pages, console sign-in)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class LinkSettings(BaseSettings):
    public_base_url: str | None = Field(
        default=None, description="Absolute base of links sent to people (tracking pages, console sign-in), "
                                  "e.g. https://gd.example.com; default http://<host>:<port> of `serve`.")
