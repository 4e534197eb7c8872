"""The aiohttp application."""

from __future__ import annotations

from aiohttp import web

from bot.api_v1 import routes as api_v1_routes
from bot.api_v1 import scrape
from bot.console import routes as console_routes
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web import api as http_api
from bot.web import exposure, icons, pages, playground
from bot.web.api import RUNTIME
from bot.web.customer import routes as customer_routes


def build_app(settings: Settings, *, host: str = "127.0.0.1", port: int = 8080, runtime: Runtime | None = None,
              prepare: bool = True) -> web.Application:
    """`host`: the bind address, which decides what is exposed (bot/web/exposure.py) and whether the
    demo directory is loaded; with `port` it makes the default PUBLIC_BASE_URL. `prepare` migrates the
    database and loads the demo on start-up."""
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[http_api.api_token_middleware, api_v1_routes.v1_middleware])
    rt = runtime or Runtime(settings)
    app[RUNTIME] = rt
    rt.public_base_url = settings.public_base(host, port)
    http_api.add_routes(app)
    api_v1_routes.add_routes(app, rt)  # issue 23: /api/v1/ (docs/api.md)
    app.router.add_get("/metrics", scrape.handler(rt))
    icons.add_routes(app)
    pages.setup_templates(app)  # issues 21, 22: server-rendered pages and their static files
    pages.add_static_routes(app)
    customer_routes.add_routes(app)
    console_routes.add_routes(app)
    for adapter in rt.adapters:
        adapter.add_routes(app)
    exposure.warn_open_api(settings, host)
    if exposure.playground_served(settings, host):
        playground.add_routes(app)

    async def on_startup(_app: web.Application) -> None:
        if prepare:
            await rt.prepare_database(bind=host)
        await rt.start()
        await rt.warm_for_intake()  # issue 24: before the service is ready, not in its first fault report

    async def on_cleanup(_app: web.Application) -> None:
        await rt.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    # Issue 24: templates compiled in a thread once started (after jieba's load), not on a page's first view.
    pages.warm_templates_after_start(app, after=rt.rulebook.ready)
    return app
