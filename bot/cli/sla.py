"""`ticketbot sla explain --priority P --impact I --at ISO-TIME [--json]` (a CLI contract).

The same computation the service uses: the stored SLA matrix and holiday overrides when the
database has them (else the shipped defaults), the tenant's zone and working hours from settings.
JSON keys `cell`, `clock` (business|wall), `response_due`, `resolution_due` (ISO 8601 with offset)
are the contract; more keys may be added.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from zoneinfo import ZoneInfo

from bot.service_config import sla_settings_from
from bot.settings import Settings
from core.clock import SystemClock
from core.errors import TicketbotError
from core.settings import SlaSettings
from core.sla.calendar import BusinessCalendar, parse_instant
from core.sla.matrix import SlaMatrix, explain, explain_text
from core.sla.stored_config import CalendarConfig, build_calendar, load_calendar_config, load_matrix


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sla = subparsers.add_parser("sla", help="SLA tools")
    sla_sub = sla.add_subparsers(dest="sla_command", metavar="ACTION")
    explain_parser = sla_sub.add_parser("explain", help="the matched cell and the deadlines for a report")
    explain_parser.add_argument("--priority", required=True, help="紧急 / 常规 / 咨询 (or urgent/normal/consult)")
    explain_parser.add_argument("--impact", required=True, help="单用户 / 部门 / 全厂 (or user/department/plant)")
    explain_parser.add_argument("--at", help="report time, ISO 8601 with offset (default: now)")
    explain_parser.add_argument("--json", action="store_true", help="print JSON")
    explain_parser.set_defaults(func=cmd_explain)

    def usage(_args: argparse.Namespace) -> int:
        sla.print_help()
        return 2

    sla.set_defaults(func=usage)


async def stored_configuration(settings: Settings, sla: SlaSettings) -> tuple[SlaMatrix, BusinessCalendar]:
    """The matrix and calendar the service would use; defaults when the database has none."""
    zone = ZoneInfo(settings.timezone)
    defaults = SlaMatrix.default(), build_calendar(zone, sla, CalendarConfig())
    url = settings.resolved_database_url()
    from sqlalchemy.exc import SQLAlchemyError

    from storage.database import create_engine, session_factory, sqlite_path
    from storage.unit_of_work import SqlUnitOfWork

    path = sqlite_path(url)
    if path is not None and not path.exists():
        return defaults  # never create a database file just to read it
    engine = create_engine(url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            _, matrix = await load_matrix(uow)
            _, config = await load_calendar_config(uow)
        return matrix, build_calendar(zone, sla, config)
    except (SQLAlchemyError, OSError):
        return defaults  # no schema yet, or no database server: the shipped defaults apply
    finally:
        await engine.dispose()


def cmd_explain(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        sla = sla_settings_from(settings)
        at = parse_instant(args.at) if args.at else SystemClock().now()
        matrix, calendar = asyncio.run(stored_configuration(settings, sla))
        result = explain(args.priority, args.impact, at, calendar, matrix, reminder_lead=sla.reminder_lead)
    except TicketbotError as error:
        print(f"错误：{error.user_message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(explain_text(result))
    return 0
