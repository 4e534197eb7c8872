"""The local chat playground: a real adapter (page → inbox → conversation → outbox → page).

Anyone can act as anyone here, so it is served only when enabled (by default only on a
loopback bind). Its JSON API is a contract for end-to-end tests (see CONTRACTS.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from importlib import resources
from typing import Any

from aiohttp import web
from sqlalchemy import bindparam, exists, select
from sqlmodel import col

from bot.web.api import RUNTIME, json_error
from core.inbound import InboundKind, InboundMessage
from core.model import ROLE_LABELS, Role
from storage.database import compact_json, parse_json
from storage.sqlite.prepared import hot
from storage.tables import IdentityRow, PersonRow, TechnicianRow

PLATFORM = "local"
USER_ID = re.compile(r"[\w.@:\-\u4e00-\u9fff]{1,64}")  # always fullmatch: `$` would let "abc\n" through
MAX_IMAGE_BYTES = 5 * 1024 * 1024
RECENT_ITEMS = 10  # what a POST answers with: the person's latest messages
RECENT_ROWS = 40


async def page(_request: web.Request) -> web.Response:
    html = resources.files("bot.web").joinpath("static/playground.html").read_text(encoding="utf-8")
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def to_playground(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/playground")


async def people(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    async with runtime.sessions() as session:
        rows = (await session.execute(
            select(PersonRow, TechnicianRow).join(IdentityRow, col(IdentityRow.person_id) == PersonRow.id)
            .outerjoin(TechnicianRow, col(TechnicianRow.person_id) == PersonRow.id)
            .where(col(IdentityRow.platform) == PLATFORM, col(PersonRow.active).is_(True))
            .order_by(col(PersonRow.role), col(PersonRow.id))
        )).all()
    body = []
    for person, tech in rows:
        body.append({
            "id": person.id, "name": person.name, "role": person.role, "store_id": person.store_id,
            "role_label": ROLE_LABELS.get(Role(person.role), person.role),  # the page shows Chinese
            "skills": list(tech.skills) if tech else [],
            "certifications": list(tech.certifications) if tech else [],
            "on_duty": tech.on_duty if tech else None,
        })
    return web.json_response(body)


async def _read_json(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        data = await request.json(loads=parse_json)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return json_error(400, "malformed JSON body")
    if not isinstance(data, dict):
        return json_error(400, "the body must be a JSON object")
    user = data.get("user")
    if not isinstance(user, str) or not USER_ID.fullmatch(user):
        return json_error(400, "user must be an id of 1–64 letters, digits, '_', '-', '.', '@', ':' or Chinese")
    return data


def _message_from(data: dict[str, Any]) -> InboundMessage | web.Response:
    user: str = data["user"]
    key = f"{user}:{uuid.uuid4().hex}"
    if "text" in data:
        if not isinstance(data["text"], str):
            return json_error(400, "text must be a string")
        return InboundMessage(PLATFORM, key, user, InboundKind.TEXT, text=data["text"])
    if "image" in data:
        image = data["image"]
        if not isinstance(image, str):
            return json_error(400, "image must be base64 text")
        try:
            raw = base64.b64decode(image.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError):
            return json_error(400, "image is not valid base64")
        if not raw or len(raw) > MAX_IMAGE_BYTES:
            return json_error(400, f"image must be 1 byte to {MAX_IMAGE_BYTES} bytes")
        return InboundMessage(PLATFORM, key, user, InboundKind.IMAGE, image_b64=base64.b64encode(raw).decode())
    if "location" in data:
        loc = data["location"]
        try:
            lat, lng = float(loc["lat"]), float(loc["lng"])
        except (TypeError, KeyError, ValueError):
            return json_error(400, "location must be {\"lat\": number, \"lng\": number}")
        if not (-90 <= lat <= 90 and -180 <= lng <= 180):
            return json_error(400, "location out of range")
        return InboundMessage(PLATFORM, key, user, InboundKind.LOCATION, lat=lat, lng=lng)
    return json_error(400, "send one of: text, image (base64), location {lat, lng}")


# A person whose id is the sender's but who is not the playground identity of that id: a playground
# sender's person id is their user id, so storing them would collide with that person. Built once
# and hot: it runs for every playground message.
_ID_TAKEN_ELSEWHERE = hot(select(col(PersonRow.id)).where(
    col(PersonRow.id) == bindparam("user"),
    ~exists(select(col(IdentityRow.person_id)).where(
        col(IdentityRow.platform) == PLATFORM, col(IdentityRow.external_id) == bindparam("user")))))


def _taken_answer(user: str) -> web.Response:
    return json_error(409, f"用户 ID「{user}」已属于其他平台的人员，请换一个 ID。"
                           f" / user id {user!r} belongs to a person of another platform; choose another id.")


async def _accept_and_process(request: web.Request, message: InboundMessage) -> web.Response:
    runtime = request.app[RUNTIME]
    # The playground answers only once the message is handled (a GET right after sees the answer),
    # so the answer is its acknowledgement: storing, handling, finishing the row and reading the
    # answer back share one transaction, and each unit of work inside it is a savepoint. A handling
    # that fails is undone alone and its row stays pending with the error, for the sweep to retry.
    async with runtime.sessions.shared_transaction():
        # Checked in the transaction that would store the sender: refused, nothing is stored (no
        # inbox row for the sweep to retry, no half-made person).
        async with runtime.sessions.transaction(savepoint=False) as conn:
            taken = (await conn.execute(_ID_TAKEN_ELSEWHERE, {"user": message.sender})).first() is not None
        if taken:
            return _taken_answer(message.sender)
        row_id = await runtime.inbox.accept_row(message, schedule=False)
        handled = row_id is not None and await runtime.processor.handle_claimed(row_id, message)
        later = runtime.processor.take_later(row_id) if handled and row_id is not None else None
        # The newest few rows are enough for the last 10 items (in-place card updates are folded
        # away); a supervisor may have hundreds.
        async with runtime.sessions.transaction(savepoint=False) as conn:  # fails only with the whole block
            if handled and row_id is not None and later is None:
                await runtime.inbox.finish_in(conn, row_id)
            items = [] if later is not None else \
                await runtime.outbox.local_messages_in(conn, message.sender, limit=RECENT_ROWS)
    if later is not None and row_id is not None:
        # A long read the handler left for after the transaction (报表): the answer waits for it,
        # the transaction (and every message sharing its commit) did not. Read back in the answer's
        # transaction, as above: what this message answered are the newest rows.
        async def read_back() -> None:
            nonlocal items
            async with runtime.sessions.transaction(savepoint=False) as conn:
                items = await runtime.outbox.local_messages_in(conn, message.sender, limit=RECENT_ROWS)

        if not await runtime.processor.answer_later(row_id, later, read_back):
            items = await runtime.outbox.local_messages(message.sender, limit=RECENT_ROWS)
    return web.json_response({"accepted": row_id is not None, "messages": items[-RECENT_ITEMS:]}, dumps=compact_json)


async def post_message(request: web.Request) -> web.Response:
    data = await _read_json(request)
    if isinstance(data, web.Response):
        return data
    message = _message_from(data)
    if isinstance(message, web.Response):
        return message
    return await _accept_and_process(request, message)


async def get_messages(request: web.Request) -> web.Response:
    user = request.query.get("user", "")
    if not USER_ID.fullmatch(user):
        return json_error(400, "query parameter user is required")
    runtime = request.app[RUNTIME]
    async with runtime.uow() as uow:
        person = await uow.person_by_identity(PLATFORM, user)
    if person is None:
        return web.json_response([])
    return web.json_response(await runtime.outbox.local_messages(person.id), dumps=compact_json)


async def post_action(request: web.Request) -> web.Response:
    data = await _read_json(request)
    if isinstance(data, web.Response):
        return data
    card_id, action, values = data.get("card_id"), data.get("action"), data.get("values") or {}
    if not isinstance(card_id, str) or not isinstance(action, str) or not card_id or not action:
        return json_error(400, "card_id and action are required strings")
    if not isinstance(values, dict) or not all(isinstance(v, (str, int, float, bool)) for v in values.values()):
        return json_error(400, "values must be an object of strings")
    clean = {str(k): ("true" if v is True else "false" if v is False else str(v)) for k, v in values.items()}
    message = InboundMessage(PLATFORM, f"{data['user']}:{uuid.uuid4().hex}", data["user"], InboundKind.CARD_ACTION,
                             card_id=card_id, action=action, values=clean)
    return await _accept_and_process(request, message)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", to_playground)
    app.router.add_get("/playground", page)
    app.router.add_get("/playground/api/people", people)
    app.router.add_post("/playground/api/messages", post_message)
    app.router.add_get("/playground/api/messages", get_messages)
    app.router.add_post("/playground/api/actions", post_action)
