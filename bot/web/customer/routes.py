"""Registers the customer pages."""

from __future__ import annotations

from aiohttp import web

from bot.web.customer import report, sign, tracking


def add_routes(app: web.Application) -> None:
    report.add_routes(app)
    tracking.add_routes(app)
    sign.add_routes(app)
