"""`ticketbot import technicians FILE` (a CLI contract): bulk import from CSV or Excel (.xlsx).

Prints one JSON object: `ok`, `rows_read`, `imported` (rows saved), `created` / `updated` (person
ids), `rejected_rows`, `errors` ([{row, column, message}], row 1 = the header), `records` (the rows
saved), `columns`, `ignored_columns`, `encoding`. Exit status 0 when every row was saved, 1 when any
row was rejected (the good rows are saved anyway), 2 when the file cannot be read at all.

Ids already in the directory: a technician is updated — the columns present in the file replace the
stored values (an empty cell clears a list, the store or the supervisor), absent columns are kept;
an id that belongs to someone who is not a technician (customer, supervisor ...) is rejected for that
row. Rows are checked against the database too: unknown stores and supervisors, platform ids that
belong to another person (or to an earlier row of the file) are per-row errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bot.cli.technician_file import ImportReport, TechnicianRecord, parse_technician_file
from bot.settings import Settings
from core.dispatch.admin import ImportOutcome, ImportRow, ImportTechnicians, TechnicianFields
from core.errors import TicketbotError

EXIT_REJECTED_ROWS = 1
EXIT_UNREADABLE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("import", help="bulk imports")
    sub = parser.add_subparsers(dest="import_command", metavar="WHAT")
    technicians = sub.add_parser("technicians", help="technicians from a CSV or .xlsx file → JSON report")
    technicians.add_argument("file", metavar="FILE", type=Path)
    technicians.set_defaults(func=cmd_import_technicians)
    parser.set_defaults(func=lambda _args: usage(parser))


def usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_UNREADABLE


def import_row(record: TechnicianRecord, columns: set[str]) -> ImportRow:
    """Only the columns the file has change an existing technician."""

    def given(column: str, value: Any) -> Any:
        return value if column in columns else None

    position = (record.lat, record.lng) if record.lat is not None and record.lng is not None else None
    identities = tuple((platform, value) for platform, value in
                       (("wecom", record.wecom_id), ("dingtalk", record.dingtalk_id), ("feishu", record.feishu_id))
                       if value)
    fields = TechnicianFields(
        name=record.name,
        phone=given("phone", record.phone or ""),
        certifications=given("certifications", record.certifications),
        skills=given("skills", record.skills),
        excluded_categories=given("excluded_categories", record.excluded_categories),
        store_id=given("store", record.store or ""),
        supervisor_id=given("supervisor", record.supervisor or ""),
        max_load=given("max_load", record.max_load),
        on_duty=record.on_duty,
        position=position,
        identities=identities,
    )
    return ImportRow(record.row, record.person_id, fields)


def result(report: ImportReport, outcome: ImportOutcome) -> dict[str, Any]:
    errors = [e.to_dict() for e in report.errors] + [e.to_dict() for e in outcome.errors]
    errors.sort(key=lambda e: (e["row"], e["column"] or ""))
    saved = set(outcome.created) | set(outcome.updated)
    return {
        "ok": not errors,
        "rows_read": report.rows_read,
        "imported": len(saved),
        "created": outcome.created,
        "updated": outcome.updated,
        "rejected_rows": len({e["row"] for e in errors if e["row"] > 1}),
        "errors": errors,
        "records": [r.to_dict() for r in report.records if r.person_id in saved],
        "columns": report.columns,
        "ignored_columns": report.ignored_columns,
        "encoding": report.encoding,
    }


async def run_import(settings: Settings, path: Path) -> dict[str, Any]:
    from bot.rules.rulebook import RuleBook
    from bot.service_config import service_config
    from core.clock import SystemClock
    from core.service import SYSTEM_ACTOR, TicketService
    from storage.database import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.unit_of_work import SqlUnitOfWork

    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        async with SqlUnitOfWork(sessions) as uow:
            stores = await uow.dispatch_store().stores()
        report = parse_technician_file(path, known_stores=set(stores))
        outcome = ImportOutcome()
        if report.records:
            service = TicketService(lambda: SqlUnitOfWork(sessions, channels=settings.delivery_channels()),
                                    SystemClock(), RuleBook(),
                                    service_config(settings))
            columns = set(report.columns)
            rows = tuple(import_row(r, columns) for r in report.records)
            outcome = await service.handle(ImportTechnicians(rows), SYSTEM_ACTOR)
        return result(report, outcome)
    finally:
        await engine.dispose()


def cmd_import_technicians(args: argparse.Namespace) -> int:
    try:
        body = asyncio.run(run_import(Settings(), args.file))
    except OSError as error:
        print(json.dumps({"ok": False, "error": f"无法读取文件：{error}"}, ensure_ascii=False))
        return EXIT_UNREADABLE
    except TicketbotError as error:
        print(json.dumps({"ok": False, "error": error.user_message}, ensure_ascii=False))
        return EXIT_UNREADABLE
    json.dump(body, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0 if body["ok"] else EXIT_REJECTED_ROWS
