"""`ticketbot customer forget ID`: erase a customer's personal data (PIPL; docs/masterdata.md,
"Personal data").

Prints `{"customer", "forgotten": true, "tickets": N}` (N: their tickets scrubbed) and exits 0; an
unknown customer (or a staff id) exits 1 with `{"customer", "forgotten": false, "error"}`; a
database that cannot be used exits 2. The audit trail is not rewritten: `ticketbot audit verify`
still passes afterwards.

The logs go in the same transaction: the SMS log's rows to the customer's phones or about their
tickets get the phone masked and their codes are dropped, and the stored webhook bodies about their
tickets get the phones masked; the messages they sent (inbox) and were sent (outbox), and 微信客服
messages held for them, are deleted (storage/message_logs.py). Their phones and platform identities are
read before the forget erases them; one transaction means a failure leaves everything as it was, to
run again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from bot.settings import Settings
from core.errors import TicketbotError

if TYPE_CHECKING:
    from storage.database import Sessions

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
    from storage.message_logs import SqlMessageLogs
    from storage.migrate import upgrade
    from storage.sms_store import SqlSmsStore
    from storage.unit_of_work import SqlUnitOfWork
    from storage.webhook_store import SqlWebhookStore

    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        use_audit_key(engine, settings)  # the audit events of the forget are sealed like every other
        sessions = session_factory(engine)
        service = TicketService(lambda: SqlUnitOfWork(sessions, channels=settings.delivery_channels()),
                                SystemClock(), RuleBook(), service_config(settings))
        messages = SqlMessageLogs(sessions)
        # Read before the transaction, in short ones (the whole inbox: the sender is inside the payload);
        # the forget then looks only at rows that arrived since. The identities are gone once it commits.
        senders = await customer_identities(sessions, person_id)
        inbox_ids, read_through = await messages.inbox_rows_from(senders)
        async with sessions.shared_transaction():
            phones = await customer_phones(sessions, person_id)
            result: dict[str, Any] = await service.handle(ForgetCustomer(person_id), SYSTEM_ACTOR)
            # (The printed object stays as documented: the logs' counts are not part of it.)
            await SqlSmsStore(sessions).forget(person_id, phones)
            await SqlWebhookStore(sessions, service.clock).forget(person_id)
            await messages.forget(person_id, senders, inbox_ids, read_through)
        return result
    finally:
        await engine.dispose()


async def customer_identities(sessions: Sessions, person_id: str) -> list[tuple[str, str]]:
    """The (platform, external id) pairs the person writes from: their inbox rows' senders."""
    from sqlalchemy import select
    from sqlmodel import col

    from storage.tables import IdentityRow

    async with sessions.transaction(savepoint=False) as conn:
        rows = await conn.execute(select(col(IdentityRow.platform), col(IdentityRow.external_id)).where(
            col(IdentityRow.person_id) == person_id))
        return sorted((str(platform), str(external)) for platform, external in rows)


async def customer_phones(sessions: Sessions, person_id: str) -> list[str]:
    """Every number the customer is known by: the person's phone, the customer record's phones and
    their SMS identity (the report page's customers are reached by it)."""
    from sqlalchemy import select
    from sqlmodel import col

    from core.masterdata.identifiers import normalise_phone
    from storage.tables import CustomerPhoneRow, IdentityRow, PersonRow

    async with sessions.transaction(savepoint=False) as conn:
        found = list((await conn.execute(select(col(PersonRow.phone)).where(col(PersonRow.id) == person_id))).scalars())
        found += (await conn.execute(select(col(CustomerPhoneRow.phone)).where(
            col(CustomerPhoneRow.person_id) == person_id))).scalars()
        found += (await conn.execute(select(col(IdentityRow.external_id)).where(
            col(IdentityRow.person_id) == person_id, col(IdentityRow.platform) == "sms"))).scalars()
    # The SMS log holds normalised mobiles (bot/sms/phones.py); a record may hold the number as typed.
    return sorted({form for p in found if p for form in (p, normalise_phone(p)) if form})


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
