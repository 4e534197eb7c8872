"""Signing in to the staff console from the chat, sessions, CSRF and scope (issue 22, docs/console.md).

No passwords: `后台` in the chat (bot/chat/console_link.py) sends a one-time link
`PUBLIC_BASE_URL/console/signin/<token>` (CONSOLE_LINK_MINUTES, single use, bound to the person).
Opening it sets the session cookie and redirects to /console/. The cookie is HttpOnly, SameSite=Lax,
Secure when the request is HTTPS or PUBLIC_BASE_URL is https; the session ends after
CONSOLE_IDLE_MINUTES without a request, CONSOLE_SESSION_HOURS after sign-in, on 退出, or on
`后台 退出全部`. Links and sessions are stored as SHA-256 only (storage/console_store.py).

Every request re-reads the session and its person: a deactivated person (or one whose role no longer
has a console) is signed out at once. `console_gate` (a middleware) answers 302 to /console/signin for
every /console/ URL without a session — pages, photos, exports, and routes added later — so a handler
never runs for a stranger. Handlers then call `staff(request, *roles)` for the session and role check,
`posted_form` for CSRF-checked forms, and `forbidden` for an audited 403.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from bot.console.scope import CONSOLE_ROLES, may_use_console, stores_of
from bot.runtime import Runtime
from bot.web.api import RUNTIME
from core.model import ROLE_LABELS, Person, Role
from storage.console_store import ConsoleStore, LinkRefusal

COOKIE = "tb_console"
PREFIX = "/console"
SIGNIN_PATH = "/console/signin"
# The request's resolved StaffSession (or None): resolved once per request (the gate, then the handler).
_SESSION_KEY = web.RequestKey("console_session", object)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
POLL_HEADER = "X-Console-Poll"  # a page refreshing itself (htmx polling): not activity, the idle time runs on


@dataclass(frozen=True)
class StaffSession:
    person: Person  # re-read every request: a deactivated person loses the session at once
    store_ids: frozenset[str] | None  # None: every store (admin, quality); else the stores they may see
    csrf_token: str
    session_id: str  # the SHA-256 of the cookie (what the database keeps)

    def can_see_store(self, store_id: str | None) -> bool:
        if self.store_ids is None:
            return True
        return store_id is not None and store_id in self.store_ids


@dataclass(frozen=True, slots=True)
class NavLink:
    label: str
    href: str
    roles: frozenset[Role]


# The console's sections, each shown to the roles whose pages allow them (the pages check again).
NAV: tuple[NavLink, ...] = (
    NavLink("工单队列", "/console/", CONSOLE_ROLES),
    NavLink("看板", "/console/dashboards", frozenset({Role.SUPERVISOR, Role.ADMIN, Role.QUALITY})),
    NavLink("管理", "/console/admin/", frozenset({Role.ADMIN})),
    NavLink("运维", "/console/ops/", frozenset({Role.ADMIN, Role.SUPERVISOR})),
)


def runtime_of(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def console_store(request: web.Request) -> ConsoleStore:
    return ConsoleStore(runtime_of(request).sessions)


def csrf_for(session_token: str) -> str:
    """Derived from the cookie's secret (no storage): a page of this session carries it, nobody else knows it."""
    return hmac.new(session_token.encode("utf-8", "surrogateescape"), b"ticketbot-console-csrf",
                    hashlib.sha256).hexdigest()


async def _resolve(request: web.Request) -> StaffSession | None:
    if _SESSION_KEY in request:
        cached = request[_SESSION_KEY]
        return cached if isinstance(cached, StaffSession) else None
    session: StaffSession | None = None
    token = request.cookies.get(COOKIE)
    if token and len(token) <= 128:
        runtime = runtime_of(request)
        store = console_store(request)
        active = await store.active_session(
            token, now=runtime.clock.now(), idle=timedelta(minutes=runtime.settings.console_idle_minutes),
            touch=POLL_HEADER not in request.headers)
        if active is not None and may_use_console(active.person):
            session = StaffSession(active.person, await stores_of(active.person, store), csrf_for(token),
                                   active.token_hash)
    request[_SESSION_KEY] = session
    return session


async def staff(request: web.Request, *roles: Role) -> StaffSession:
    """The signed-in staff member. No (or an ended) session: raises 302 to /console/signin. A role not
    in `roles` (empty: any console role): raises an audited 403."""
    session = await _resolve(request)
    if session is None:
        raise web.HTTPFound(SIGNIN_PATH)
    if roles and session.person.role not in roles:
        raise await forbidden(request, session, f"页面 {request.path}（需要{_role_words(roles)}）")
    return session


def _role_words(roles: tuple[Role, ...]) -> str:
    return "、".join(ROLE_LABELS[r] for r in roles)


async def posted_form(request: web.Request, session: StaffSession) -> MultiDictProxy[str]:
    """The POSTed form, after checking its `csrf_token` field (or the X-CSRF-Token header): 403 otherwise."""
    form = await request.post()
    supplied = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not isinstance(supplied, str) or not hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"),
                                                                session.csrf_token.encode()):
        raise _page_error(request, 403, "表单已失效", "这个表单没有有效的安全令牌（可能是旧页面或来自别的网站）。"
                                                   "请刷新页面后重试。")
    return MultiDictProxy(MultiDict((key, value) for key, value in form.items() if isinstance(value, str)))


async def forbidden(request: web.Request, session: StaffSession, what: str, *,
                    ticket_number: str | None = None) -> web.HTTPForbidden:
    """Audits `console_forbidden` (who asked for what) and returns the 403 page to raise. `ticket_number`:
    the ticket the request was about, when it exists (its trail shows the attempt)."""
    runtime = runtime_of(request)
    async with runtime.uow() as uow:
        await uow.append_audit(kind="console_forbidden", actor_id=session.person.id, at=runtime.clock.now(),
                               payload={"what": what[:200], "path": request.path[:200], "method": request.method,
                                        "role": session.person.role.value}, ticket_number=ticket_number)
        await uow.commit()
    html = aiohttp_jinja2.render_string("console/forbidden.html", request,
                                        page_context(request, session, what=what))
    return web.HTTPForbidden(text=html, content_type="text/html")


def local_time(request: web.Request) -> Callable[[datetime | None], str]:
    zone: ZoneInfo = runtime_of(request).service.config.timezone

    def render(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return moment.astimezone(zone).strftime(fmt) if moment is not None else "—"

    return render


def page_context(request: web.Request, session: StaffSession, **values: Any) -> dict[str, Any]:
    """The base context every console template needs: `staff` (the Person), `role_label`, `csrf_token`,
    `nav` (links for this role, with `active`), `now` (aware, tenant zone), `zone`, `fmt_time` (a datetime
    → local text; a second argument is a strftime format), `path`."""
    runtime = runtime_of(request)
    zone: ZoneInfo = runtime.service.config.timezone
    role = session.person.role
    nav = [{"label": link.label, "href": link.href,
            "active": request.path == link.href or (link.href != "/console/" and request.path.startswith(link.href))
            or (link.href == "/console/" and request.path.startswith("/console/tickets"))}
           for link in NAV if role in link.roles]
    return {"staff": session.person, "role_label": ROLE_LABELS[role], "csrf_token": session.csrf_token,
            "nav": nav, "now": runtime.clock.now().astimezone(zone), "zone": zone, "fmt_time": local_time(request),
            "path": request.path, "store_scope": session.store_ids, **values}


def _page_error(request: web.Request, status: int, title: str, message: str) -> web.HTTPException:
    html = aiohttp_jinja2.render_string("console/signin.html", request,
                                        {"title": title, "message": message, "signed_in": False})
    error_class = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound, 410: web.HTTPGone}[status]
    return error_class(text=html, content_type="text/html")


def secure_cookie(request: web.Request) -> bool:
    return request.secure or runtime_of(request).public_base_url.lower().startswith("https://")


# --- the gate ---
@web.middleware
async def console_gate(request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every /console/ URL but the sign-in pages needs a session: 302 to /console/signin otherwise,
    before any handler runs (and for unknown paths too: a stranger learns nothing). Console answers
    are never cached by a shared cache and never framed."""
    path = request.path
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        return await handler(request)
    if not (path == SIGNIN_PATH or path.startswith(SIGNIN_PATH + "/")) and await _resolve(request) is None:
        raise web.HTTPFound(SIGNIN_PATH)
    try:
        response = await handler(request)
    except web.HTTPException as error:
        _harden(error)
        raise
    _harden(response)
    return response


def _harden(response: web.StreamResponse) -> None:
    if response.prepared:
        return
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


# --- sign-in pages ---
REFUSALS: dict[LinkRefusal, tuple[int, str, str]] = {
    LinkRefusal.UNKNOWN: (404, "链接无效", "这个登录链接无效（可能不完整或被改动过）。"),
    LinkRefusal.USED: (410, "链接已使用", "这个登录链接已经用过了：每个链接只能打开一次。"),
    LinkRefusal.EXPIRED: (410, "链接已过期", "这个登录链接已过期。"),
    LinkRefusal.PERSON_GONE: (403, "无法登录", "这个链接所属的账号已停用，或没有后台权限。"),
}
HOW_TO = "请在企业微信、飞书或钉钉中向机器人发送「后台」，点击收到的新链接即可登录。"


async def signin_page(request: web.Request) -> web.Response:
    session = await _resolve(request)
    return aiohttp_jinja2.render_template("console/signin.html", request, {
        "title": "登录后台", "message": HOW_TO, "signed_in": session is not None,
        "minutes": runtime_of(request).settings.console_link_minutes})


async def open_link(request: web.Request) -> web.StreamResponse:
    runtime = runtime_of(request)
    settings = runtime.settings
    now = runtime.clock.now()
    token = request.match_info["token"]
    if len(token) > 128:
        raise _page_error(request, 404, *REFUSALS[LinkRefusal.UNKNOWN][1:])
    redeemed = await console_store(request).redeem_link(
        token, now=now, lifetime=timedelta(hours=settings.console_session_hours),
        allowed_roles=frozenset(r.value for r in CONSOLE_ROLES))
    if redeemed.session_token is None or redeemed.person is None:
        assert redeemed.refusal is not None
        status, title, message = REFUSALS[redeemed.refusal]
        raise _page_error(request, status, title, f"{message}{HOW_TO}")
    # Ended links and sessions are kept a day (for support questions), then dropped: a sign-in is rare enough
    # to carry that small delete.
    await console_store(request).purge_ended(before=now - timedelta(days=1))
    async with runtime.uow() as uow:
        await uow.append_audit(kind="console_signed_in", actor_id=redeemed.person.id, at=now,
                               payload={"role": redeemed.person.role.value,
                                        "user_agent": request.headers.get("User-Agent", "")[:200]},
                               ticket_number=None)
        await uow.commit()
    response = web.HTTPFound("/console/")
    response.set_cookie(COOKIE, redeemed.session_token, path=PREFIX + "/", httponly=True, samesite="Lax",
                        secure=secure_cookie(request), max_age=int(settings.console_session_hours * 3600))
    raise response


async def sign_out(request: web.Request) -> web.StreamResponse:
    session = await staff(request)
    await posted_form(request, session)
    await console_store(request).end_session(session.session_id, now=runtime_of(request).clock.now())
    response = web.HTTPFound(SIGNIN_PATH)
    response.del_cookie(COOKIE, path=PREFIX + "/")
    raise response


async def bare_prefix(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


def add_routes(app: web.Application) -> None:
    app.middlewares.append(console_gate)
    # Templates are part of the installed code: checking each one's file on disk per render (two stat
    # calls per template, base included) was a tenth of a queue page's time on a loaded machine.
    aiohttp_jinja2.get_env(app).auto_reload = False
    app.router.add_get(PREFIX, bare_prefix)
    app.router.add_get(SIGNIN_PATH, signin_page)
    app.router.add_get(SIGNIN_PATH + "/{token}", open_link)
    app.router.add_post("/console/signout", sign_out)
