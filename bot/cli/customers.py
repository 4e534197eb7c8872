"""`ticketbot customer forget ID`: erase a customer's personal data (PIPL; docs/masterdata.md,
"Personal data").

Prints `{"customer", "forgotten": true, "tickets": N}` (N: their tickets scrubbed) and exits 0; an
unknown customer (or a staff id) exits 1 with `{"customer", "forgotten": false, "error"}`; a
database that cannot be used exits 2. The audit trail is not rewritten: `ticketbot audit verify`
still passes afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bot.settings import Settings
from core.errors import TicketbotError

EXIT_UNKNOWN = 1
EXIT_UNUSABLE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    customer = subparsers.add_parser("customer", help="customer data tools (PIPL)")
    actions = customer.add_subparsers(dest="customer_command", metavar="ACTION")
    forget = actions.add_parser("forget", help="erase a customer's personal fields; tickets stay, anonymised")
    forget.add_argument("id", help="the customer's id (person id)")
    forget.set_defaults(func=cmd_forget)


async def forget(settings: Settings, person_id: str) -> dict[str, Any]:
    from bot.audit_key import use_audit_key
    from bot.rules.rulebook import RuleBook
    from bot.service_config import service_config
    from core.clock import SystemClock
    from core.masterdata.privacy import ForgetCustomer
    from core.service import SYSTEM_ACTOR, TicketService
    from storage.database import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.unit_of_work import SqlUnitOfWork

    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        use_audit_key(engine, settings)  # the audit events of the forget are sealed like every other
        sessions = session_factory(engine)
        service = TicketService(lambda: SqlUnitOfWork(sessions, channels=settings.delivery_channels()),
                                SystemClock(), RuleBook(), service_config(settings))
        result: dict[str, Any] = await service.handle(ForgetCustomer(person_id), SYSTEM_ACTOR)
        return result
    finally:
        await engine.dispose()


def cmd_forget(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from bot.audit_key import AuditKeyError

    try:
        body = asyncio.run(forget(Settings(), args.id))
    except TicketbotError as error:
        print(json.dumps({"customer": args.id, "forgotten": False, "error": error.user_message}, ensure_ascii=False))
        return EXIT_UNKNOWN
    except (SQLAlchemyError, OSError, AuditKeyError) as error:
        print(f"cannot use the database: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(json.dumps(body, ensure_ascii=False))
    return 0
