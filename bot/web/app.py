"""The aiohttp application."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.runtime import Runtime
from bot.settings import Settings
from bot.web import api as http_api
from bot.web import playground
from bot.web.api import RUNTIME

log = logging.getLogger(__name__)


def build_app(settings: Settings, *, host: str = "127.0.0.1", runtime: Runtime | None = None,
              prepare: bool = True) -> web.Application:
    """`prepare` migrates the database and loads the demo directory on start-up."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[http_api.api_token_middleware])
    rt = runtime or Runtime(settings)
    app[RUNTIME] = rt
    http_api.add_routes(app)
    for adapter in rt.adapters:
        adapter.add_routes(app)
    if settings.playground_enabled(host):
        playground.add_routes(app)
    else:
        log.info("playground disabled (bound to %s; set PLAYGROUND=on to force it)", host)

    async def on_startup(_app: web.Application) -> None:
        if prepare:
            await rt.prepare_database()
        await rt.start()

    async def on_cleanup(_app: web.Application) -> None:
        await rt.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
