"""Signing in to the staff console in tests, the way a person does: a `后台` link, opened.

- `await sign_in(client, runtime, "sup-li")` (an aiohttp TestClient of the real app): issues the link
  with the same store call the `后台` command makes, opens it, returns the cookies (the client's jar
  keeps them too). With `runtime_or_sessions=None` it really sends `后台` through the playground API and
  opens the URL from the reply.
- `await sign_in("http://127.0.0.1:PORT", None, "sup-li")` (a served process): the same over HTTP.
- `chat_signin_url(base_url, "sup-li")` (sync, for Playwright tests): sends `后台` in the playground and
  returns the absolute sign-in URL from the reply; `page.goto(url)` signs the browser in.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from bot.console.auth import COOKIE
from storage.console_store import ConsoleStore

SIGNIN_URL = re.compile(r"https?://\S+/console/signin/[A-Za-z0-9_\-]+")


def signin_url_in(texts: list[str]) -> str:
    """The newest sign-in URL among the bot's texts."""
    for text in reversed(texts):
        found = SIGNIN_URL.search(text)
        if found:
            return found.group(0)
    raise AssertionError(f"no sign-in URL in the bot's replies: {texts[-3:]}")


async def _link_by_store(runtime_or_sessions: Any, person_id: str) -> str:
    sessions = getattr(runtime_or_sessions, "sessions", runtime_or_sessions)
    clock = getattr(runtime_or_sessions, "clock", None)
    now = clock.now() if clock is not None else datetime.now(UTC)
    return await ConsoleStore(sessions).issue_link(person_id, now=now, valid_for=timedelta(minutes=10))


async def sign_in(client_or_base_url: TestClient | str, runtime_or_sessions: Any, person_id: str) -> dict[str, str]:
    """Signs `person_id` in; returns {cookie name: value}. Fails the test when the link does not open."""
    if isinstance(client_or_base_url, str):
        base = client_or_base_url.rstrip("/")
        async with aiohttp.ClientSession() as http:
            if runtime_or_sessions is None:
                url = await _chat_link(http, base, person_id)
            else:
                url = f"{base}/console/signin/{await _link_by_store(runtime_or_sessions, person_id)}"
            async with http.get(url, allow_redirects=False) as resp:
                assert resp.status == 302, await resp.text()
                return {COOKIE: resp.cookies[COOKIE].value}
    client = client_or_base_url
    if runtime_or_sessions is None:
        resp = await client.post("/playground/api/messages", json={"user": person_id, "text": "后台"})
        assert resp.status == 200, await resp.text()
        messages = await (await client.get("/playground/api/messages", params={"user": person_id})).json()
        path = urllib.parse.urlsplit(signin_url_in([m["text"] for m in messages if m.get("text")])).path
    else:
        path = f"/console/signin/{await _link_by_store(runtime_or_sessions, person_id)}"
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console/", await resp.text()
    return {COOKIE: resp.cookies[COOKIE].value}


async def _chat_link(http: aiohttp.ClientSession, base: str, person_id: str) -> str:
    async with http.post(f"{base}/playground/api/messages", json={"user": person_id, "text": "后台"}) as resp:
        assert resp.status == 200, await resp.text()
    async with http.get(f"{base}/playground/api/messages", params={"user": person_id}) as resp:
        messages = await resp.json()
    return signin_url_in([m["text"] for m in messages if m.get("text")])


def chat_signin_url(base_url: str, person_id: str) -> str:
    """Sync: `后台` through the playground API of a served process; the sign-in URL of the reply."""
    base = base_url.rstrip("/")
    request = urllib.request.Request(f"{base}/playground/api/messages", method="POST",
                                     data=json.dumps({"user": person_id, "text": "后台"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
    query = urllib.parse.urlencode({"user": person_id})
    with urllib.request.urlopen(f"{base}/playground/api/messages?{query}", timeout=10) as resp:
        messages = json.loads(resp.read())
    return signin_url_in([m["text"] for m in messages if m.get("text")])
