"""The aiohttp application."""

from __future__ import annotations

from aiohttp import web

from bot.api_v1 import routes as api_v1_routes
from bot.api_v1 import scrape
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web import api as http_api
from bot.web import exposure, icons, playground
from bot.web.api import RUNTIME


def build_app(settings: Settings, *, host: str = "127.0.0.1", runtime: Runtime | None = None,
              prepare: bool = True) -> web.Application:
    """`host`: the bind address, which decides what is exposed (bot/web/exposure.py) and whether the
    demo directory is loaded. `prepare` migrates the database and loads the demo on start-up."""
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[http_api.api_token_middleware, api_v1_routes.v1_middleware])
    rt = runtime or Runtime(settings)
    app[RUNTIME] = rt
    http_api.add_routes(app)
    api_v1_routes.add_routes(app, rt)  # issue 23: /api/v1/ (docs/api.md)
    app.router.add_get("/metrics", scrape.handler(rt))
    icons.add_routes(app)
    for adapter in rt.adapters:
        adapter.add_routes(app)
    exposure.warn_open_api(settings, host)
    if exposure.playground_served(settings, host):
        playground.add_routes(app)

    async def on_startup(_app: web.Application) -> None:
        if prepare:
            await rt.prepare_database(bind=host)
        await rt.start()

    async def on_cleanup(_app: web.Application) -> None:
        await rt.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
