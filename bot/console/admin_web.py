"""What every admin page shares: running a core command as the signed-in admin, turning a refused
input into a 400 that names the field, and the preview page (a dry run) whose button confirms.

A preview never stores anything; the confirm button posts the same values again (hidden fields)
with the version the preview was made from, and only then does the command run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot.console.auth import StaffSession, page_context
from bot.runtime import Runtime
from bot.web.api import RUNTIME
from core.errors import Conflict, NotAllowed, NotFound, TicketbotError
from core.model import Person

ADMIN_ROOT = "/console/admin/"


class FormError(Exception):
    """Bad input on an admin form: the field it concerns and a Chinese message; nothing was saved."""

    def __init__(self, field: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


def runtime_of(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def error_from(error: TicketbotError, default_field: str) -> FormError:
    """A core refusal as a form error: the field the core named (`data["field"]`), else `default_field`."""
    status = 409 if isinstance(error, Conflict) else 404 if isinstance(error, NotFound) else 400
    field_name = error.data.get("field") or error.data.get("cell") or error.data.get("where") or default_field
    return FormError(str(field_name), error.user_message, status=status)


async def run_as(request: web.Request, person: Person, command: object, *, field: str) -> Any:
    """Run a core command as the admin (the chat's path: same handler, same audit, same reply in chat)."""
    try:
        return await runtime_of(request).service.handle(command, person)
    except NotAllowed:
        raise web.HTTPForbidden(text="没有权限") from None
    except TicketbotError as error:
        raise error_from(error, field) from error


def render(request: web.Request, session: StaffSession, template: str, *, status: int = 200,
           **values: Any) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, page_context(request, session, **values))
    response.set_status(status)
    return response


@dataclass(frozen=True, slots=True)
class Table:
    """A table on a preview page (e.g. the dry run): caption, header, rows of text."""

    caption: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    empty: str = "（无）"


@dataclass(frozen=True, slots=True)
class Preview:
    title: str
    action: str  # where the confirm button posts
    hidden: Sequence[tuple[str, str]]  # the values to post again
    lines: Sequence[str] = ()  # what will change
    warnings: Sequence[str] = ()  # high-risk changes (the chat asks 确认 for them)
    tables: Sequence[Table] = ()
    confirm_label: str = "确认保存"
    back: str = ADMIN_ROOT
    blocked: str = ""  # a reason the change cannot be saved as it is (no confirm button)


def render_preview(request: web.Request, session: StaffSession, section_title: str, preview: Preview) -> web.Response:
    return render(request, session, "console/admin_preview.html", section_title=section_title, preview=preview)


def int_field(form: Mapping[str, str], name: str, *, minimum: int = 0) -> int:
    raw = (form.get(name) or "").strip()
    if not raw.lstrip("vV").isdigit() or int(raw.lstrip("vV")) < minimum:
        raise FormError(name, f"「{name}」应为不小于 {minimum} 的整数，收到「{raw[:20]}」。")
    return int(raw.lstrip("vV"))


def see_other(location: str) -> web.Response:
    """303 to the page (Post/Redirect/Get), returned rather than raised so callers can return it."""
    return web.Response(status=303, headers={"Location": location})


def saved_redirect(slug: str, version: object) -> web.Response:
    return see_other(f"{ADMIN_ROOT}{slug}?saved={version}")
