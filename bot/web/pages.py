"""Server-rendered pages (issues 21, 22): one Jinja2 environment and the static files they use.

Templates are named by their package: `customer/…` (bot/web/customer/templates) and `console/…`
(bot/console/templates). Vendored front-end libraries (bot/web/static/vendor/README.md) and the pages'
own assets are served under /static/ with cache headers: vendored files never change under their
versioned path, so they are cached for a long time.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

STATIC_PREFIX = "/static/"
VENDOR_MAX_AGE_S = 30 * 24 * 3600
OWN_MAX_AGE_S = 3600


def setup_templates(app: web.Application) -> None:
    loader = jinja2.PrefixLoader({
        "customer": jinja2.PackageLoader("bot.web.customer", "templates"),
        "console": jinja2.PackageLoader("bot.console", "templates"),
    })
    aiohttp_jinja2.setup(app, loader=loader, autoescape=jinja2.select_autoescape(default=True),
                         trim_blocks=True, lstrip_blocks=True)


def add_static_routes(app: web.Application) -> None:
    web_static = Path(str(resources.files("bot.web").joinpath("static")))
    console_static = Path(str(resources.files("bot.console").joinpath("static")))
    app.router.add_static(f"{STATIC_PREFIX}vendor/", web_static / "vendor", name="vendor")
    app.router.add_static(f"{STATIC_PREFIX}console/", console_static, name="console_static")
    app.on_response_prepare.append(_cache_headers)


async def _cache_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not request.path.startswith(STATIC_PREFIX) or response.status != 200:
        return
    max_age = VENDOR_MAX_AGE_S if request.path.startswith(f"{STATIC_PREFIX}vendor/") else OWN_MAX_AGE_S
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
