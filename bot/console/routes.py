"""Registers the console's pages."""

from __future__ import annotations

from aiohttp import web

from bot.console import admin_pages, auth, dashboards, exports, ops, queues, ticket_file


def add_routes(app: web.Application) -> None:
    auth.add_routes(app)
    queues.add_routes(app)
    ticket_file.add_routes(app)
    exports.add_routes(app)
    dashboards.add_routes(app)
    admin_pages.add_routes(app)
    ops.add_routes(app)
