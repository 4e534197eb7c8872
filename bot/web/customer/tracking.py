"""`GET /t/{token}`: the customer's tracking page (issue 21), its photos and its live updates.

The token is the capability (bot/tracking_links.py): anything that does not resolve — forged, revoked,
expired — gets the same 404 page, which names no ticket. The page is server-rendered and complete without
JavaScript; with it, an EventSource on `/t/{token}/events` swaps the live part in place when the ticket
changes, and Leaflet (vendored, loaded only when there is something to put on a map, when the map comes into
view) draws the markers. Pages are gzip-compressed for clients that accept it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_sse import sse_response
from PIL import Image
from sqlalchemy import select
from sqlmodel import col

from bot.runtime import Runtime
from bot.tracking_links import TrackingLinks
from bot.web.api import RUNTIME
from bot.web.customer.tracking_view import TrackingView, fingerprint, load_page, load_view
from core.lifecycle.photos import image_format
from core.model import Ticket
from storage.tables import PhotoRow

SHA256 = re.compile(r"[0-9a-f]{64}")
THUMB_PX = 240
THUMB_FOLDER = "thumbs"
LIVE_POLL_S = 2.0  # how often an open page's stream looks for changes (two indexed lookups)
LIVE_MAX_S = 600.0  # a stream ends after this; the browser's EventSource reconnects by itself
PRIVATE = {"Cache-Control": "private, no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}


class LiveStreams:
    """The handler tasks of open pages' event streams (ended at shutdown)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any] | None] = set()


LIVE_STREAMS = web.AppKey("tracking_live_streams", LiveStreams)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/t/{token}", page)
    app.router.add_get("/t/{token}/events", events)
    app.router.add_get("/t/{token}/photos/{sha256}", photo)
    app[LIVE_STREAMS] = LiveStreams()
    app.on_shutdown.append(_end_live_streams)


async def _end_live_streams(app: web.Application) -> None:
    """Open pages' streams end at shutdown (their browsers reconnect to another process), so stopping the
    server does not wait for them."""
    for task in list(app[LIVE_STREAMS].tasks):
        if task is not None:
            task.cancel()


def links_of(request: web.Request) -> tuple[Runtime, TrackingLinks]:
    runtime = request.app[RUNTIME]
    return runtime, runtime.tracking


def not_found(request: web.Request) -> web.Response:
    """The one answer to every token that does not open a ticket: nothing says which way it failed."""
    response = aiohttp_jinja2.render_template("customer/not_found.html", request, {}, status=404)
    response.headers.update(PRIVATE)
    return response


async def ticket_of(request: web.Request) -> Ticket | None:
    _runtime, links = links_of(request)
    return await links.resolve(request.match_info["token"])


def page_context(request: web.Request, view: TrackingView, *, full_page: bool) -> dict[str, object]:
    runtime, _links = links_of(request)
    token = request.match_info["token"]
    updated = runtime.clock.now().astimezone(runtime.service.config.timezone)
    return {"view": view, "ticket": view.ticket, "token": token, "base": f"/t/{token}",
            "tile_url": runtime.settings.map_tile_url, "full_page": full_page, "updated": f"{updated:%H:%M}"}


async def page(request: web.Request) -> web.StreamResponse:
    runtime, links = links_of(request)
    decoded = links.decode(request.match_info["token"])
    if decoded is None:
        return not_found(request)
    number, generation = decoded
    view = await load_page(runtime, number, lambda ticket: links.is_current(ticket, generation))
    if view is None:
        return not_found(request)
    response = aiohttp_jinja2.render_template("customer/tracking.html", request,
                                                page_context(request, view, full_page=True))
    response.headers.update(PRIVATE)
    response.enable_compression()
    return response


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `update` with the live part's new HTML when the ticket changed, `gone` when the
    link stopped working (revoked, expired) — then the stream ends."""
    _runtime, links = links_of(request)
    decoded = links.decode(request.match_info["token"])
    first = await ticket_of(request)
    if decoded is None or first is None:
        return not_found(request)
    number, generation = decoded
    seen = request.query.get("v", "")
    ends = asyncio.get_running_loop().time() + LIVE_MAX_S
    live = request.app[LIVE_STREAMS].tasks
    task = asyncio.current_task()
    live.add(task)
    try:
        return await _stream(request, number, generation, seen, ends)
    finally:
        live.discard(task)


async def _stream(request: web.Request, number: str, generation: int, seen: str,
                  ends: float) -> web.StreamResponse:
    runtime, links = links_of(request)
    loop = asyncio.get_running_loop()
    async with sse_response(request, headers=PRIVATE) as stream:
        while stream.is_connected() and loop.time() < ends:
            if request.transport is None or request.transport.is_closing():
                break  # the page was closed
            found = await fingerprint(runtime, number)
            if found is None or not links.is_current(found[0], generation):
                await stream.send("gone", event="gone")
                break
            ticket, current = found
            if current != seen:
                view = await load_view(runtime, ticket)
                html = aiohttp_jinja2.render_string("customer/tracking_live.html", request,
                                                    page_context(request, view, full_page=False))
                await stream.send(html, event="update", id=view.fingerprint)
                seen = view.fingerprint
            await asyncio.sleep(LIVE_POLL_S)
    return stream


async def photo(request: web.Request) -> web.StreamResponse:
    """A photo of this ticket, only through its token; `?thumb=1`: a small JPEG made once and kept."""
    sha256 = request.match_info["sha256"]
    ticket = await ticket_of(request) if SHA256.fullmatch(sha256) else None
    if ticket is None:
        return not_found(request)
    runtime, _links = links_of(request)
    async with runtime.engine.connect() as conn:
        relative = (await conn.execute(select(col(PhotoRow.path)).where(
            col(PhotoRow.ticket_number) == ticket.number, col(PhotoRow.sha256) == sha256).limit(1))).scalar()
    data_dir = runtime.settings.data_dir
    path = data_dir / str(relative) if relative else None
    if path is None or not path.is_file():
        return not_found(request)
    headers = {"Cache-Control": "private, max-age=86400", "X-Robots-Tag": "noindex"}
    if request.query.get("thumb"):
        try:
            path = await asyncio.to_thread(thumbnail, path, data_dir / THUMB_FOLDER / f"{sha256}-{THUMB_PX}.jpg")
        except (OSError, ValueError, Image.DecompressionBombError):
            return not_found(request)
        headers["Content-Type"] = "image/jpeg"
    else:
        kind = image_format(await asyncio.to_thread(_head, path))
        headers["Content-Type"] = f"image/{kind}" if kind else "application/octet-stream"
        headers["X-Content-Type-Options"] = "nosniff"
    return web.FileResponse(path, headers=headers)


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(16)


def thumbnail(source: Path, target: Path) -> Path:
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))
        image.thumbnail((THUMB_PX, THUMB_PX))
        temporary = target.with_name(f".{target.name}.tmp")
        image.convert("RGB").save(temporary, "JPEG", quality=75, optimize=True)
    temporary.replace(target)
    return target
