"""`ticketbot api-client add|rotate|revoke|list` (issue 23, docs/api.md#clients).

`add NAME --scopes S1,S2` prints one JSON object `{"name", "scopes", "token"}` — the only time the
token is shown (only its SHA-256 is stored); `rotate NAME` prints the same with a new token (the old
one stops working); `revoke NAME` prints `{"name", "revoked": true}`; `list` prints a JSON array.
Each client gets an actor person `api:NAME` (role admin), under which its writes are audited; the
three changes are audited too. Exit 1: a bad name or scope, a known name on add, an unknown one else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from bot.settings import Settings

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")
EXIT_REFUSED = 1
T = TypeVar("T")


class Refused(Exception):
    pass


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("api-client", help="API v1 clients: add, rotate, revoke, list (docs/api.md)")
    actions = parser.add_subparsers(dest="api_client_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="register a system; prints its token once")
    add.add_argument("name", help="the system's name, e.g. yida or k3 (letters, digits, _ . -)")
    add.add_argument("--scopes", required=True, help="comma-separated: tickets:read, tickets:write, "
                                                     "masterdata:read, masterdata:write")
    add.set_defaults(func=cmd_add)
    rotate = actions.add_parser("rotate", help="a new token for a client (the old one stops working)")
    rotate.add_argument("name")
    rotate.set_defaults(func=cmd_rotate)
    revoke = actions.add_parser("revoke", help="stop a client's token")
    revoke.add_argument("name")
    revoke.set_defaults(func=cmd_revoke)
    listing = actions.add_parser("list", help="the clients (never their tokens)")
    listing.set_defaults(func=cmd_list)


def parse_scopes(text: str) -> list[str]:
    from bot.api_v1.auth import SCOPES

    scopes = sorted({s.strip() for s in text.split(",") if s.strip()})
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise Refused(f"unknown scopes: {', '.join(unknown) or '(none given)'}; known: {', '.join(SCOPES)}")
    return scopes


async def _with_uow(settings: Settings, work: Callable[[Any, Any], Awaitable[T]]) -> T:
    from bot.audit_key import use_audit_key
    from core.clock import SystemClock
    from storage.database import create_engine, session_factory
    from storage.migrate import create_fresh_schema, is_at_head, upgrade
    from storage.unit_of_work import SqlUnitOfWork

    url = settings.resolved_database_url()
    engine = create_engine(url)
    try:
        if not await is_at_head(engine) and not await create_fresh_schema(engine):
            await asyncio.to_thread(upgrade, url)
        use_audit_key(engine, settings)
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            result = await work(uow, SystemClock().now())
            await uow.commit()
            return result
    finally:
        await engine.dispose()


async def add_client(uow: Any, name: str, scopes: list[str], now: Any) -> str:
    """Register `name` in the unit of work's transaction (the caller commits); returns the token."""
    from bot.api_v1.auth import new_token, token_hash
    from core.hub.api import api_person_id
    from core.model import Person, Role

    if not NAME.fullmatch(name):
        raise Refused(f"bad client name {name!r}: 1–48 letters, digits, _ . - (first a letter or digit)")
    token = new_token()
    hub = uow.hub()
    if await hub.client(name) is not None:
        raise Refused(f"client {name} exists: use `ticketbot api-client rotate {name}` for a new token")
    person_id = api_person_id(name)
    person = await uow.get_person(person_id)
    if person is None:
        await uow.add_person(Person(id=person_id, name=f"接口 {name}", role=Role.ADMIN), {"api": name})
    elif person.role is not Role.ADMIN or not person.active:
        person.role, person.active = Role.ADMIN, True
        await uow.save_person(person)
    await hub.add_client(name, token_hash(token), scopes, person_id, at=now)
    await uow.append_audit(kind="api_client_added", actor_id="system", at=now,
                           payload={"name": name, "scopes": scopes}, ticket_number=None)
    return token


async def add(settings: Settings, name: str, scopes: list[str]) -> dict[str, Any]:
    token = await _with_uow(settings, lambda uow, now: add_client(uow, name, scopes, now))
    return {"name": name, "scopes": scopes, "token": token}


async def rotate(settings: Settings, name: str) -> dict[str, Any]:
    from bot.api_v1.auth import new_token, token_hash

    token = new_token()

    async def work(uow: Any, now: Any) -> list[str]:
        hub = uow.hub()
        client = await hub.client(name)
        if client is None or not await hub.set_token(name, token_hash(token), at=now):
            raise Refused(f"no client named {name}")
        await uow.append_audit(kind="api_client_rotated", actor_id="system", at=now, payload={"name": name},
                               ticket_number=None)
        return sorted(client.scopes)

    scopes = await _with_uow(settings, work)
    return {"name": name, "scopes": scopes, "token": token}


async def revoke(settings: Settings, name: str) -> dict[str, Any]:
    async def work(uow: Any, now: Any) -> None:
        hub = uow.hub()
        if await hub.client(name) is None:
            raise Refused(f"no client named {name}")
        if await hub.revoke_client(name, at=now):
            await uow.append_audit(kind="api_client_revoked", actor_id="system", at=now, payload={"name": name},
                                   ticket_number=None)

    await _with_uow(settings, work)
    return {"name": name, "revoked": True}


async def listing(settings: Settings) -> list[dict[str, Any]]:
    async def work(uow: Any, now: Any) -> list[dict[str, Any]]:
        return [c.to_dict() for c in await uow.hub().clients()]

    return await _with_uow(settings, work)


def _run(make: Callable[[], Coroutine[Any, Any, Any]]) -> int:
    try:
        result: Any = asyncio.run(make())
    except Refused as refused:
        print(str(refused), file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps(result, ensure_ascii=False))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    try:
        scopes = parse_scopes(args.scopes)
    except Refused as refused:
        print(str(refused), file=sys.stderr)
        return EXIT_REFUSED
    return _run(lambda: add(Settings(), args.name, scopes))


def cmd_rotate(args: argparse.Namespace) -> int:
    return _run(lambda: rotate(Settings(), args.name))


def cmd_revoke(args: argparse.Namespace) -> int:
    return _run(lambda: revoke(Settings(), args.name))


def cmd_list(args: argparse.Namespace) -> int:
    return _run(lambda: listing(Settings()))
