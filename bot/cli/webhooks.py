"""`ticketbot webhook …`: outbound webhook subscriptions, their delivery log and redelivery (issue 23,
docs/webhooks.md).

- `webhook add --client NAME --url URL --events E1,E2` → one JSON object with `id` and `secret` (the
  only time the secret is shown) — the contract;
- `webhook list` → JSON list (no secrets); `webhook remove ID`; `webhook log ID [--limit N]` → the
  latest deliveries with every attempt;
- `webhook redeliver --failed-since ISO [--client NAME]` (the contract) or `--delivery ID` → `{"redelivered": N}`.

Bad input (an unknown event type, a malformed URL, a URL into a private network while
WEBHOOK_ALLOW_PRIVATE is off, an unknown id) → a one-line error on stderr and exit 1; a database
that cannot be used → exit 2. The running service picks redeliveries up within a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.settings import Settings

EXIT_BAD_INPUT = 1
EXIT_UNUSABLE = 2


class BadInput(Exception):
    pass


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhook = subparsers.add_parser("webhook", help="outbound webhooks: subscriptions, delivery log, redelivery")
    actions = webhook.add_subparsers(dest="webhook_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="subscribe a system (API client) to events; prints id and secret")
    add.add_argument("--client", required=True, help="the system's API client name")
    add.add_argument("--url", required=True, help="where to POST (http:// or https://)")
    add.add_argument("--events", required=True, help="comma-separated event types, e.g. ticket.created,ticket.signed")
    add.set_defaults(func=lambda args: _run(_add, args))
    listing = actions.add_parser("list", help="the active subscriptions (JSON, no secrets)")
    listing.add_argument("--all", action="store_true", help="removed ones too")
    listing.set_defaults(func=lambda args: _run(_list, args))
    remove = actions.add_parser("remove", help="remove a subscription (its pending deliveries are dropped)")
    remove.add_argument("id", type=int)
    remove.set_defaults(func=lambda args: _run(_remove, args))
    log = actions.add_parser("log", help="a subscription's latest deliveries with every attempt (JSON)")
    log.add_argument("id", type=int)
    log.add_argument("--limit", type=int, default=20)
    log.set_defaults(func=lambda args: _run(_log, args))
    redeliver = actions.add_parser("redeliver", help="send failed deliveries (or one delivery) again")
    which = redeliver.add_mutually_exclusive_group(required=True)
    which.add_argument("--failed-since", metavar="ISO", help="every failed delivery of an event since this time")
    which.add_argument("--delivery", type=int, metavar="ID", help="one delivery, whatever its state")
    redeliver.add_argument("--client", help="with --failed-since: only this system's")
    redeliver.set_defaults(func=lambda args: _run(_redeliver, args))


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[Any]:
    from core.clock import SystemClock
    from storage.database import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.webhook_store import SqlWebhookStore

    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        yield SqlWebhookStore(session_factory(engine), SystemClock())
    finally:
        await engine.dispose()


def parse_since(text: str, zone: ZoneInfo) -> datetime:
    """An ISO date or time; without an offset it is local time in TIMEZONE."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise BadInput(f"--failed-since: not an ISO date/time: {text!r} (e.g. 2026-12-06T08:00:00+08:00)") from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


async def _add(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from bot.jobs.webhooks import UnsafeUrl, check_url
    from core.hub.webhook_events import parse_event_types

    client = args.client.strip()
    if not client or len(client) > 64:
        raise BadInput("--client: give the system's API client name (1–64 characters)")
    try:
        events = parse_event_types(args.events)
    except ValueError as error:
        raise BadInput(f"--events: {error}") from error
    url = args.url.strip()
    try:
        await check_url(url, allow_private=settings.webhook_allow_private)
    except UnsafeUrl as error:
        raise BadInput(f"--url: {error}") from error
    async with _store(settings) as store:
        known = await store.client_known(client)
        subscription = await store.add_subscription(client=client, url=url, secret=secrets.token_hex(32),
                                                    events=events)
    body: dict[str, Any] = {**subscription.public(), "secret": subscription.secret}
    if not known:
        # Kept (a subscription is only a label for its system), but said: a typo would split a
        # system's dashboard in two.
        body["warning"] = f"{client!r} is not a registered API client (ticketbot api-client add {client})"
        print(f"warning: {body['warning']}", file=sys.stderr)
    return body


async def _list(settings: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    async with _store(settings) as store:
        return [s.public() for s in await store.subscriptions(active_only=not args.all)]


async def _remove(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    async with _store(settings) as store:
        if not await store.remove_subscription(args.id):
            raise BadInput(f"no active webhook subscription {args.id} (see `ticketbot webhook list`)")
    return {"id": args.id, "removed": True}


async def _log(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    if args.limit < 1:
        raise BadInput("--limit must be at least 1")
    async with _store(settings) as store:
        subscription = await store.subscription(args.id)
        if subscription is None:
            raise BadInput(f"no webhook subscription {args.id} (see `ticketbot webhook list`)")
        return {"subscription": subscription.public(), "deliveries": await store.log(args.id, args.limit)}


async def _redeliver(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    since = parse_since(args.failed_since, ZoneInfo(settings.timezone)) if args.delivery is None else None
    async with _store(settings) as store:
        if since is None:
            if not await store.delivery_exists(args.delivery):
                raise BadInput(f"no webhook delivery {args.delivery}")
            if not await store.redeliver(args.delivery):
                raise BadInput(f"webhook delivery {args.delivery} is being sent right now; try again shortly")
            return {"redelivered": 1, "delivery": args.delivery}
        return {"redelivered": await store.redeliver_failed(since, client=args.client), "since": since.isoformat()}


def _run(action: Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, Any]],
         args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        result = asyncio.run(action(Settings(), args))
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (SQLAlchemyError, OSError) as error:
        print(f"cannot use the database: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(json.dumps(result, ensure_ascii=False, default=str))
    return 0
