"""The site icon, on every bind: a browser asks for /favicon.ico on any page it opens (the
playground, /api/ answers, /healthz). The playground page names the SVG; the .ico holds the same
drawing at 16, 32 and 48 px for whatever asks by the old name."""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

ICONS = {"/favicon.ico": ("favicon.ico", "image/x-icon"), "/favicon.svg": ("favicon.svg", "image/svg+xml")}
CACHE_FOR = "public, max-age=86400"


@cache
def _icon(name: str) -> bytes:
    return resources.files("bot.web").joinpath(f"static/{name}").read_bytes()


async def icon(request: web.Request) -> web.Response:
    name, content_type = ICONS[request.path]
    return web.Response(body=_icon(name), content_type=content_type, headers={"Cache-Control": CACHE_FOR})


def add_routes(app: web.Application) -> None:
    for path in ICONS:
        app.router.add_get(path, icon)
