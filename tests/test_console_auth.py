"""Signing in to the staff console from the chat (issue 22): links, sessions, CSRF, scope, the gate."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.console.auth import COOKIE, posted_form, staff
from bot.web.app import build_app
from core.model import Role
from storage.console_store import ConsoleStore, token_hash
from storage.tables import AuditEventRow, PersonRow
from storage.tables_console import ConsoleLinkRow, ConsoleSessionRow
from tests.conftest import make_settings, runtime_of
from tests.console_support import sign_in, signin_url_in
from tests.playground_client import PlaygroundUser


class Clock:
    """A settable clock for the expiries (the runtime's clock is injected, as in the service)."""

    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.at = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)

    def now(self):  # type: ignore[no-untyped-def]
        return self.at


@pytest.fixture
async def client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    from bot.runtime import Runtime

    settings = make_settings(sqlite_url, tmp_path, public_base_url="http://console.example.cn")
    runtime = Runtime(settings, clock=Clock())  # type: ignore[arg-type]
    app = build_app(settings, runtime=runtime)

    async def csrf_probe(request: web.Request) -> web.Response:  # a form handler as the pages write them
        session = await staff(request)
        form = await posted_form(request, session)
        return web.Response(text=f"ok {form.get('x')}")

    app.router.add_post("/console/_probe", csrf_probe)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def clock_of(client: TestClient) -> Clock:
    return runtime_of(client).clock  # type: ignore[return-value]


async def audit_kinds(client: TestClient, kind: str) -> list[AuditEventRow]:
    async with runtime_of(client).sessions() as s:
        return list((await s.execute(select(AuditEventRow).where(AuditEventRow.kind == kind))).scalars())


async def test_the_chat_link_signs_in_and_redirects_to_the_console(client: TestClient) -> None:
    sup = PlaygroundUser(client, "sup-li")
    await sup.say("后台")
    url = signin_url_in(await sup.texts())
    assert url.startswith("http://console.example.cn/console/signin/")
    token = url.rsplit("/", 1)[1]
    assert len(token) >= 40
    async with runtime_of(client).sessions() as s:  # stored hashed only
        rows = list((await s.execute(select(ConsoleLinkRow))).scalars())
    assert [r.token_hash for r in rows] == [token_hash(token)] and token not in repr(rows)

    resp = await client.get(f"/console/signin/{token}", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console/"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # plain http
    assert "Path=/console/" in cookie
    page = await client.get("/console/")
    assert page.status == 200 and "主管 李强" in await page.text()
    assert await audit_kinds(client, "console_signed_in")


async def test_an_https_public_base_makes_the_cookie_secure(sqlite_url: str, tmp_path: Path) -> None:
    app = build_app(make_settings(sqlite_url, tmp_path, public_base_url="https://gd.example.cn"))
    async with TestClient(TestServer(app)) as http_client:
        token = await ConsoleStore(runtime_of(http_client).sessions).issue_link(
            "admin", now=runtime_of(http_client).clock.now(), valid_for=timedelta(minutes=5))
        resp = await http_client.get(f"/console/signin/{token}", allow_redirects=False)
        assert resp.status == 302
        assert "Secure" in resp.headers["Set-Cookie"] and "HttpOnly" in resp.headers["Set-Cookie"]


@pytest.mark.parametrize("case", ["forged", "used", "expired", "another_installation"])
async def test_bad_links_show_a_clear_page_and_open_no_session(client: TestClient, case: str) -> None:
    runtime = runtime_of(client)
    store = ConsoleStore(runtime.sessions)
    token = await store.issue_link("sup-li", now=clock_of(client).now(), valid_for=timedelta(minutes=10))
    expected = {"forged": "链接无效", "used": "已经用过", "expired": "已过期", "another_installation": "链接无效"}[case]
    if case == "forged":
        token = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    elif case == "used":
        first = await client.get(f"/console/signin/{token}", allow_redirects=False)
        assert first.status == 302
        client.session.cookie_jar.clear()
    elif case == "expired":
        clock_of(client).at += timedelta(minutes=10, seconds=1)
    else:
        token = "x" * 43
    resp = await client.get(f"/console/signin/{token}", allow_redirects=False)
    assert resp.status in (403, 404, 410)
    body = await resp.text()
    assert expected in body and "发送「后台」" in body
    assert COOKIE not in resp.cookies
    page = await client.get("/console/", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"] == "/console/signin"


async def test_a_link_is_bound_to_its_person(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "sup-chen")
    page = await client.get("/console/")
    assert "主管 陈静" in await page.text() and "主管 李强" not in await page.text()


@pytest.mark.parametrize("person", ["tech-wang", "cust-demo"])
async def test_technicians_and_customers_get_no_link(client: TestClient, person: str) -> None:
    user = PlaygroundUser(client, person)
    await user.say("后台")
    last = await user.last_text()
    assert "/console/signin/" not in last and "后台只对" in last
    async with runtime_of(client).sessions() as s:
        assert not list((await s.execute(select(ConsoleLinkRow))).scalars())
    refused = await audit_kinds(client, "command_refused")
    assert any(e.actor_id == person and e.payload["command"] == "后台" for e in refused)


async def test_a_link_of_someone_deactivated_since_opens_nothing(client: TestClient) -> None:
    runtime = runtime_of(client)
    token = await ConsoleStore(runtime.sessions).issue_link("sup-li", now=clock_of(client).now(),
                                                            valid_for=timedelta(minutes=10))
    await _set_active(client, "sup-li", False)
    resp = await client.get(f"/console/signin/{token}", allow_redirects=False)
    assert resp.status == 403 and "已停用" in await resp.text()
    assert COOKIE not in resp.cookies


async def _set_active(client: TestClient, person_id: str, active: bool) -> None:
    async with runtime_of(client).sessions() as s:
        row = await s.get(PersonRow, person_id)
        assert row is not None
        row.active = active
        await s.commit()


async def test_a_deactivated_persons_session_stops_at_once(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "sup-li")
    assert (await client.get("/console/", allow_redirects=False)).status == 200
    await _set_active(client, "sup-li", False)
    resp = await client.get("/console/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console/signin"


async def test_a_person_whose_role_loses_the_console_is_signed_out(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "sup-li")
    async with runtime_of(client).sessions() as s:
        row = await s.get(PersonRow, "sup-li")
        assert row is not None
        row.role = Role.TECHNICIAN.value
        await s.commit()
    assert (await client.get("/console/", allow_redirects=False)).status == 302


async def test_idle_and_absolute_expiry(client: TestClient) -> None:
    clock = clock_of(client)
    settings = runtime_of(client).settings
    await sign_in(client, runtime_of(client), "admin")
    # Requests within the idle time keep it alive ...
    for _ in range(3):
        clock.at += timedelta(minutes=settings.console_idle_minutes - 1)
        assert (await client.get("/console/", allow_redirects=False)).status == 200
    # ... an idle gap ends it.
    clock.at += timedelta(minutes=settings.console_idle_minutes, seconds=1)
    assert (await client.get("/console/", allow_redirects=False)).status == 302

    await sign_in(client, runtime_of(client), "admin")
    start = clock.at
    while clock.at < start + timedelta(hours=settings.console_session_hours) - timedelta(minutes=30):
        clock.at += timedelta(minutes=30)
        assert (await client.get("/console/", allow_redirects=False)).status == 200
    clock.at = start + timedelta(hours=settings.console_session_hours)
    assert (await client.get("/console/", allow_redirects=False)).status == 302


async def test_signing_out_everywhere_from_the_chat(client: TestClient, tmp_path: Path) -> None:
    runtime = runtime_of(client)
    cookies = await sign_in(client, runtime, "sup-li")
    # A second browser of the same person, and an unused link.
    other = TestClient(TestServer(client.app))
    spare = await ConsoleStore(runtime.sessions).issue_link("sup-li", now=clock_of(client).now(),
                                                            valid_for=timedelta(minutes=10))
    sup = PlaygroundUser(client, "sup-li")
    await sup.say("后台 退出全部")
    assert "已退出全部后台登录（1 个会话）" in await sup.last_text()
    resp = await client.get("/console/", allow_redirects=False, cookies=cookies)
    assert resp.status == 302
    assert (await client.get(f"/console/signin/{spare}", allow_redirects=False)).status == 410
    async with runtime.sessions() as s:
        assert all(r.revoked_at is not None for r in (await s.execute(select(ConsoleSessionRow))).scalars())
    del other


async def test_signing_out_ends_this_session(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "admin")
    page = await (await client.get("/console/")).text()
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert csrf
    resp = await client.post("/console/signout", data={"csrf_token": csrf.group(1)}, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console/signin"
    assert (await client.get("/console/", allow_redirects=False)).status == 302


async def test_posts_without_the_csrf_token_are_refused(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "admin")
    page = await (await client.get("/console/")).text()
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert csrf
    for data, headers in (({"x": "1"}, {}), ({"x": "1", "csrf_token": "0" * 64}, {}),
                          ({"x": "1", "csrf_token": ""}, {}), ({"x": "1"}, {"X-CSRF-Token": "nope"})):
        resp = await client.post("/console/_probe", data=data, headers=headers)
        assert resp.status == 403 and "安全令牌" in await resp.text()
    assert (await client.post("/console/signout", allow_redirects=False)).status == 403  # still signed in
    ok = await client.post("/console/_probe", data={"x": "1", "csrf_token": csrf.group(1)})
    assert ok.status == 200 and await ok.text() == "ok 1"
    header = await client.post("/console/_probe", data={"x": "2"}, headers={"X-CSRF-Token": csrf.group(1)})
    assert await header.text() == "ok 2"


async def test_another_sessions_csrf_token_does_not_work(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "admin")
    first = re.search(r'name="csrf_token" value="([0-9a-f]+)"', await (await client.get("/console/")).text())
    await sign_in(client, runtime_of(client), "admin")  # a new session in this client
    assert first
    resp = await client.post("/console/_probe", data={"x": "1", "csrf_token": first.group(1)})
    assert resp.status == 403


@pytest.mark.parametrize("path", ["/console/", "/console/tickets", "/console/tickets/T-20261207-0001",
                                  "/console/tickets/T-20261207-0001/photos/" + "a" * 64,
                                  "/console/tickets/T-20261207-0001/signature", "/console/tickets.xlsx",
                                  "/console/tickets.csv?store=S01", "/console/dashboards", "/console/admin/",
                                  "/console/ops/", "/console/no-such-page", "/console"])
async def test_without_a_session_every_console_url_redirects_to_the_signin_page(client: TestClient,
                                                                                path: str) -> None:
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console/signin"
    assert resp.headers.get("Content-Type", "").split(";")[0] != "application/vnd.openxmlformats-officedocument" \
                                                                 ".spreadsheetml.sheet"
    garbage = await client.get(path, allow_redirects=False, cookies={COOKIE: "forged-session"})
    assert garbage.status == 302
    page = await client.get("/console/signin")
    assert page.status == 200 and "发送「后台」" in await page.text()


async def test_posts_without_a_session_redirect_too(client: TestClient) -> None:
    resp = await client.post("/console/_probe", data={"x": "1"}, allow_redirects=False)
    assert resp.status == 302


async def test_console_pages_are_not_cached_or_framed(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "admin")
    resp = await client.get("/console/")
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["X-Frame-Options"] == "DENY"


async def test_ended_links_and_sessions_are_dropped_a_day_later(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "admin")
    await ConsoleStore(runtime_of(client).sessions).issue_link("admin", now=clock_of(client).now(),
                                                               valid_for=timedelta(minutes=10))
    clock_of(client).at += timedelta(hours=runtime_of(client).settings.console_session_hours + 25)
    await sign_in(client, runtime_of(client), "sup-li")
    async with runtime_of(client).sessions() as s:
        assert {r.person_id for r in (await s.execute(select(ConsoleSessionRow))).scalars()} == {"sup-li"}
        assert {r.person_id for r in (await s.execute(select(ConsoleLinkRow))).scalars()} == {"sup-li"}
