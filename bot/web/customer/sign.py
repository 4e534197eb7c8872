"""`GET/POST /t/{token}/sign`: the customer's sign-off page (issue 21).

The two confirmations, the rating, an optional comment and a handwritten signature drawn on a canvas
(vendored signature_pad). Submitting is the chat card's own path: `PressCardAction` on the ticket's current
sign-off card, as the ticket's customer — the same validation, guards and audit, no second way to close a
ticket. The signature image is checked, watermarked and stored first (bot/signature_store.py); its SHA-256
goes with the card's values into `signed_off` and the audit chain.

The token is the capability; every form also carries a per-page nonce (a MAC over the token and the time it
was issued, bot/tracking_links.py), and a cross-site Origin is refused. A ticket not awaiting a signature
says so; a second submission of the same card (a double tap, a resent form) signs nothing more and shows
the signature already given. Invalid input re-renders the form with the message and everything kept.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from bot.signature_store import SignatureStore
from bot.web.api import RUNTIME
from bot.web.customer.tracking import PRIVATE, not_found, ticket_of
from core.commands import PressCardAction
from core.errors import Conflict, InvalidInput, NotAllowed, NotFound, TicketbotError
from core.lifecycle.signoff import COMMENT, CONFIRMATIONS, MAX_COMMENT, RATINGS, SIGNATURE_IMAGE
from core.model import Ticket, TicketStatus

S = TicketStatus
NONCE_PURPOSE = "sign"
MAX_REASON = 200


def add_routes(app: web.Application) -> None:
    app.router.add_get("/t/{token}/sign", sign_page)
    app.router.add_post("/t/{token}/sign", submit)


def _signoff(ticket: Ticket) -> dict[str, Any]:
    data = ticket.data.get("signoff")
    return data if isinstance(data, dict) else {}


def _render(request: web.Request, ticket: Ticket, *, state: str, status: int = 200, error: str = "",
            values: dict[str, str] | None = None) -> web.Response:
    runtime = request.app[RUNTIME]
    token = request.match_info["token"]
    signed = _signoff(ticket).get("signed")
    signed_at = ""
    if isinstance(signed, dict) and isinstance(signed.get("at"), str):
        with contextlib.suppress(ValueError):
            local = datetime.fromisoformat(signed["at"]).astimezone(runtime.service.config.timezone)
            signed_at = f"{local:%Y-%m-%d %H:%M}"
    context = {
        "ticket": ticket, "state": state, "error": error, "values": values or {}, "base": f"/t/{token}",
        "nonce": runtime.tracking.page_nonce(token, NONCE_PURPOSE), "confirmations": CONFIRMATIONS,
        "ratings": RATINGS, "signed": signed if isinstance(signed, dict) else None, "max_comment": MAX_COMMENT,
        "signed_at": signed_at,
    }
    response = aiohttp_jinja2.render_template("customer/sign.html", request, context, status=status)
    response.headers.update(PRIVATE)
    response.headers["Referrer-Policy"] = "same-origin"  # so the form's post names its origin
    response.enable_compression()
    return response


def _state(ticket: Ticket) -> str:
    if ticket.status == S.PENDING_SIGNOFF and _signoff(ticket).get("card_id"):
        return "form"
    return "signed" if ticket.status == S.CLOSED and _signoff(ticket).get("signed") else "not_awaiting"


async def sign_page(request: web.Request) -> web.StreamResponse:
    ticket = await ticket_of(request)
    if ticket is None:
        return not_found(request)
    return _render(request, ticket, state=_state(ticket))


def _same_origin(request: web.Request) -> bool:
    """A browser names the site a form was posted from; another site's is refused. No Origin, or "null"
    (what a browser sends under a no-referrer policy or from a privacy mode): the nonce decides alone."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    public = urlsplit(request.app[RUNTIME].public_base_url).netloc
    return urlsplit(origin).netloc in {request.host, public}


async def submit(request: web.Request) -> web.StreamResponse:
    ticket = await ticket_of(request)
    if ticket is None:
        return not_found(request)
    runtime = request.app[RUNTIME]
    token = request.match_info["token"]
    form = await request.post()
    values = {key: str(form.get(key, "")) for key in (*CONFIRMATIONS, "rating", COMMENT, "signature", "action",
                                                       "reason")}
    if not _same_origin(request) or not runtime.tracking.check_nonce(str(form.get("nonce", "")), token,
                                                                       NONCE_PURPOSE):
        return _render(request, ticket, state=_state(ticket), status=403, values=values,
                       error="页面已过期，请重新提交（您填写的内容已保留）。")
    state = _state(ticket)
    if state != "form":
        # Already signed (a double submission) or not awaiting a signature: nothing more is signed.
        return _render(request, ticket, state=state, status=200 if state == "signed" else 409)
    card_id = str(_signoff(ticket).get("card_id"))
    action = "not_fixed" if values["action"] == "not_fixed" else "sign"
    card_values = {key: values[key] for key in (*CONFIRMATIONS, "rating", COMMENT)}
    try:
        if action == "sign":
            stored = await SignatureStore(runtime.settings.data_dir).store(
                values["signature"], number=ticket.number,
                signed_at=runtime.clock.now().astimezone(runtime.service.config.timezone))
            card_values[SIGNATURE_IMAGE] = stored.sha256
        else:
            card_values = {"reason": " ".join(values["reason"].split())[:MAX_REASON]}
        async with runtime.lookup_uow() as uow:
            customer = await uow.get_person(ticket.customer_id)
        if customer is None:
            return not_found(request)
        await runtime.service.handle(PressCardAction(card_id, action, card_values), customer)
    except InvalidInput as error:
        return _render(request, ticket, state="form", status=400, error=error.user_message, values=values)
    except Conflict:
        fresh = await ticket_of(request)
        if fresh is None:
            return not_found(request)
        return _render(request, fresh, state=_state(fresh), status=200 if _state(fresh) == "signed" else 409)
    except (NotAllowed, NotFound, TicketbotError) as error:
        return _render(request, ticket, state="not_awaiting", status=409, error=error.user_message)
    raise web.HTTPSeeOther(f"/t/{token}")
