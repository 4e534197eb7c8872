"""Shared parts of the admin-page and ops-view tests: the real app signed in as a person, reading forms
the way a browser submits them (hidden fields of the preview's confirm form), config history and audit."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlmodel import col

from bot.runtime import Runtime
from bot.web.api import RUNTIME
from bot.web.app import build_app
from storage.tables import AuditEventRow
from tests.conftest import make_settings
from tests.console_support import sign_in

_INPUT = re.compile(r"<input\b[^>]*>", re.S)
_ATTR = re.compile(r'(\w[\w.-]*)="([^"]*)"')


@asynccontextmanager
async def console(database_url: str, tmp_path: Path, person_id: str = "admin", *,
                  runtime: Runtime | None = None, **settings: Any) -> AsyncIterator[tuple[TestClient, Runtime]]:
    """The real app (demo directory) with `person_id` signed in through a one-time link."""
    app_settings = make_settings(database_url, tmp_path, **settings)
    client = TestClient(TestServer(build_app(app_settings, runtime=runtime)))
    await client.start_server()
    try:
        rt: Runtime = client.app[RUNTIME]  # type: ignore[index]
        await sign_in(client, rt, person_id)
        yield client, rt
    finally:
        await client.close()


def inputs(text: str, form_id: str | None = None) -> dict[str, str]:
    """name → value of the <input> elements (in one form when `form_id` is given), entities decoded."""
    if form_id is not None:
        start = text.index(f'id="{form_id}"')
        text = text[start:text.index("</form>", start)]
    out = {}
    for tag in _INPUT.findall(text):
        attrs = {k: html.unescape(v) for k, v in _ATTR.findall(tag)}
        if "name" in attrs:
            out[attrs["name"]] = attrs.get("value", "")
    return out


def selected(text: str) -> dict[str, str]:
    """name → the selected option's value of every <select>."""
    out = {}
    for name, body in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', text, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', body) or re.search(r'<option value="([^"]*)"', body)
        if chosen:
            out[name] = html.unescape(chosen.group(1))
    return out


def csrf(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def form_error(text: str) -> tuple[str, str] | None:
    """(field, message) of the page's error banner."""
    found = re.search(r'id="form-error" data-field="([^"]*)">(.*?)</div>', text, re.S)
    if not found:
        return None
    return html.unescape(found.group(1)), html.unescape(re.sub(r"<[^>]+>", "", found.group(2))).strip()


def list_items(text: str, list_id: str) -> list[str]:
    start = text.index(f'id="{list_id}"')
    body = text[start:text.index("</ul>", start)]
    return [html.unescape(re.sub(r"<[^>]+>", "", item)).strip() for item in re.findall(r"<li>(.*?)</li>", body, re.S)]


async def history(runtime: Runtime, kind: str) -> list[dict[str, Any]]:
    async with runtime.uow() as uow:
        return await uow.config_history(kind, limit=50)


async def audit_events(runtime: Runtime, kind: str) -> list[AuditEventRow]:
    async with runtime.sessions() as session:
        stmt = select(AuditEventRow).where(col(AuditEventRow.kind) == kind).order_by(col(AuditEventRow.seq))
        rows = await session.execute(stmt)
        return list(rows.scalars())
