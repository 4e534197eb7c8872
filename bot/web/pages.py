"""Server-rendered pages (issues 21, 22): one Jinja2 environment and the static files they use.

Templates are named by their package: `customer/…` (bot/web/customer/templates) and `console/…`
(bot/console/templates). Vendored front-end libraries (bot/web/static/vendor/README.md) and the pages'
own assets are served under /static/ with cache headers: vendored files never change under their
versioned path, so they are cached for a long time.

Compiling a template takes 1–140 ms of pure Python (the ticket file's: ~140 ms; all 29: 0.3–0.85 s). Done on
first use, that held the event loop for the first view of each page after a start (issue 24). So once
the service has started (not before: readiness must not wait for it) a thread compiles every template
— Jinja's template cache is thread-safe, and a thread holding the interpreter lock still lets the loop
run every switch interval — and a page request arriving before it has finished waits for it (without
holding the loop) instead of compiling on the loop. The compiled code is also kept for the process
(`_PROCESS_BYTECODE`): another application built in the same process (the tests build hundreds) loads
it instead of compiling again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

log = logging.getLogger(__name__)

STATIC_PREFIX = "/static/"
VENDOR_MAX_AGE_S = 30 * 24 * 3600
OWN_MAX_AGE_S = 3600
PAGE_PREFIXES = ("/console", "/r/", "/t/")  # the paths whose handlers render templates


class _ProcessBytecode(jinja2.BytecodeCache):
    """Compiled templates kept in memory for the process, checked against their source's checksum."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # a different checksum (edited source) leaves it empty

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = code


_PROCESS_BYTECODE = _ProcessBytecode()


class TemplateWarmUp:
    """Compiles every template in a thread once the application has started (see the module's docstring)."""

    def __init__(self, env: jinja2.Environment) -> None:
        self.env = env
        self._task: asyncio.Future[None] | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(asyncio.to_thread(self._compile_all))

    async def wait(self) -> None:
        self.start()
        assert self._task is not None
        await asyncio.shield(self._task)  # a cancelled request must not cancel the shared warm-up

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def stop(self) -> None:
        self._stopping.set()  # between two templates: a short-lived application does not compile them all
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    def _compile_all(self) -> None:
        for name in self.env.list_templates():
            if self._stopping.is_set():
                return
            try:
                self.env.get_template(name)  # compiled (or loaded from _PROCESS_BYTECODE) into the env's cache
            except Exception:  # a broken template fails its own page, as it would have
                log.exception("template %s does not compile", name)


TEMPLATE_WARM_UP = web.AppKey("template_warm_up", TemplateWarmUp)


def setup_templates(app: web.Application) -> None:
    loader = jinja2.PrefixLoader({
        "customer": jinja2.PackageLoader("bot.web.customer", "templates"),
        "console": jinja2.PackageLoader("bot.console", "templates"),
    })
    env = aiohttp_jinja2.setup(app, loader=loader, autoescape=jinja2.select_autoescape(default=True),
                               trim_blocks=True, lstrip_blocks=True, bytecode_cache=_PROCESS_BYTECODE)
    app[TEMPLATE_WARM_UP] = TemplateWarmUp(env)
    app.middlewares.append(_templates_ready)


def warm_templates_after_start(app: web.Application, after: Callable[[], Awaitable[None]]) -> None:
    """Call after every other start-up hook is appended: the warm-up begins when they have run and `after`
    (jieba's dictionary load, also a thread: one at a time, so the loop competes with one thread for the lock)
    has returned — or at the first page request, whichever comes first."""
    starter: list[asyncio.Task[None]] = []

    async def start_after() -> None:
        with contextlib.suppress(Exception):
            await after()
        app[TEMPLATE_WARM_UP].start()

    async def begin(_app: web.Application) -> None:
        starter.append(asyncio.get_running_loop().create_task(start_after()))

    async def end(_app: web.Application) -> None:
        for task in starter:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await app[TEMPLATE_WARM_UP].stop()

    app.on_startup.append(begin)
    app.on_cleanup.insert(0, end)


@web.middleware
async def _templates_ready(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    warm_up = request.app[TEMPLATE_WARM_UP]
    if not warm_up.done and request.path.startswith(PAGE_PREFIXES):
        await warm_up.wait()  # the page's template compiles in the thread, not on the loop
    return await handler(request)


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
