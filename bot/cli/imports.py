"""`ticketbot import KIND FILE [--dry-run]` and `ticketbot import KIND --template` (a CLI contract).

KIND: stores, teams, people, customers, assets, contracts (bot/cli/masterdata_files.py, written by
core/masterdata/imports.py) and technicians (bot/cli/technician_file.py, core/dispatch/admin.py).
Every kind prints one JSON object with `imported` (records created), `updated` (records that
existed), `failed` (rows refused) and `errors` ([{row, field, column, message}]: row 1 = the
header, `field` the English column name, `column` the header as the file writes it); exit status 1
when a row failed (the good rows are saved anyway), 2 when the file cannot be found. `--dry-run`
runs the same checks against the database in a transaction that is rolled back. `--template`
prints the header line (Chinese column names; the English ones are accepted too) and an example row.

technicians keeps its older keys: `ok`, `rows_read`, `created` (person ids), `updated_ids`,
`rejected_rows`, `records` (the rows saved), `columns`, `ignored_columns`, `encoding`; an
unreadable technicians file exits 2. Ids already in the directory: a technician is updated — the
columns present in the file replace the stored values (an empty cell clears a list, the store or
the supervisor), absent columns are kept; an id that belongs to someone who is not a technician is
rejected for that row. Rows are checked against the database too: unknown stores and supervisors,
platform ids that belong to another person (or to an earlier row of the file) are per-row errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli.masterdata_files import KINDS, ParsedFile, parse_file, template
from bot.cli.table_file import TableFileError
from bot.cli.technician_file import (
    _ALIAS_TO_FIELD,
    COLUMN_LABELS,
    ImportReport,
    TechnicianRecord,
    parse_technician_file,
)
from bot.settings import Settings
from core.dispatch.admin import ImportOutcome, ImportRow, ImportTechnicians, TechnicianFields
from core.errors import TicketbotError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from core.service import TicketService

EXIT_REJECTED_ROWS = 1
EXIT_UNREADABLE = 2
BATCH_ROWS = 1000  # rows per transaction (one audit event each): a failure costs one batch's retry
TECHNICIAN_EXAMPLE = {"person_id": "T001", "name": "周师傅", "phone": "13800000001",
                      "certifications": "OBD认证、空调R134a操作证", "skills": "电控类、机械类", "store": "S01",
                      "lat": "31.2304", "lng": "121.4737", "max_load": "5", "wecom_id": "zhoushifu",
                      "supervisor": "sup-li", "on_duty": "是"}
HELP = {"stores": "stores/sites", "teams": "teams", "people": "staff of every role", "customers": "customers",
        "assets": "devices and vehicles", "contracts": "service contracts", "technicians": "technicians"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("import", help="bulk imports (stores, teams, people, customers, assets, "
                                                  "contracts, technicians)")
    sub = parser.add_subparsers(dest="import_command", metavar="KIND")
    for kind in (*KINDS, "technicians"):
        command = sub.add_parser(kind, help=f"{HELP[kind]} from a CSV (UTF-8/GBK) or .xlsx file → JSON report")
        command.add_argument("file", metavar="FILE", type=Path, nargs="?")
        command.add_argument("--dry-run", action="store_true",
                             help="check every row against the database, write nothing")
        command.add_argument("--template", action="store_true", help="print the CSV header and an example row")
        command.set_defaults(func=cmd_import, import_kind=kind, parser=command)
    parser.set_defaults(func=lambda _args: usage(parser))


def cmd_import(args: argparse.Namespace) -> int:
    kind: str = args.import_kind
    if args.template:
        sys.stdout.write(technician_template() if kind == "technicians" else template(kind))
        return 0
    if args.file is None:
        args.parser.print_usage(sys.stderr)
        print(f"ticketbot import {kind}: 需要文件（或 --template）", file=sys.stderr)
        return EXIT_UNREADABLE
    if kind == "technicians":
        return cmd_import_technicians(args)
    return cmd_import_masterdata(kind, args.file, dry_run=args.dry_run)


def technician_template() -> str:
    from bot.cli.masterdata_files import _csv_cell

    keys = list(COLUMN_LABELS)
    return (",".join(COLUMN_LABELS[k] for k in keys) + "\n"
            + ",".join(_csv_cell(TECHNICIAN_EXAMPLE.get(k, "")) for k in keys) + "\n")


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


def _technician_field(column: str | None) -> str | None:
    """The English field name of a technician error's column (a header as written, or a label)."""
    if column is None:
        return None
    return _ALIAS_TO_FIELD.get(column.lower(), column)


def result(report: ImportReport, outcome: ImportOutcome, *, dry_run: bool = False) -> dict[str, Any]:
    errors = [e.to_dict() for e in report.errors] + [e.to_dict() for e in outcome.errors]
    errors.sort(key=lambda e: (e["row"], e["column"] or ""))
    errors = [{"row": e["row"], "field": _technician_field(e["column"]), "column": e["column"],
               "message": e["message"]} for e in errors]
    saved = set(outcome.created) | set(outcome.updated)
    header_failed = any(e["row"] == 1 for e in errors)
    rejected = len({e["row"] for e in errors if e["row"] > 1})
    return {
        "ok": not errors,
        "dry_run": dry_run,
        "rows_read": report.rows_read,
        "imported": len(outcome.created),
        "updated": len(outcome.updated),
        "failed": max(1, report.rows_read) if header_failed else rejected,
        "errors": errors,
        "created": outcome.created,
        "updated_ids": outcome.updated,
        "rejected_rows": rejected,
        "records": [r.to_dict() for r in report.records if r.person_id in saved],
        "columns": report.columns,
        "ignored_columns": report.ignored_columns,
        "encoding": report.encoding,
    }


def _service(settings: Settings, engine: AsyncEngine, *, dry_run: bool) -> TicketService:
    from bot.rules.rulebook import RuleBook
    from bot.service_config import service_config
    from core.clock import SystemClock
    from core.service import TicketService
    from storage.database import session_factory
    from storage.unit_of_work import SqlUnitOfWork

    class DryRunUnitOfWork(SqlUnitOfWork):
        """Runs every statement a real import runs, then rolls back instead of committing."""

        async def commit(self) -> None:
            await self._write_deferred()  # what a commit would write, so its failures show too

    sessions = session_factory(engine)
    factory = DryRunUnitOfWork if dry_run else SqlUnitOfWork
    return TicketService(lambda: factory(sessions, channels=settings.delivery_channels()), SystemClock(),
                         RuleBook(), service_config(settings))


async def _engine(settings: Settings) -> AsyncEngine:
    from storage.database import create_engine
    from storage.migrate import upgrade

    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url)
    return create_engine(url)


async def run_import(settings: Settings, path: Path, *, dry_run: bool = False) -> dict[str, Any]:
    from core.service import SYSTEM_ACTOR
    from storage.database import session_factory
    from storage.unit_of_work import SqlUnitOfWork

    engine = await _engine(settings)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            stores = await uow.dispatch_store().stores()
        report = parse_technician_file(path, known_stores=set(stores))
        outcome = ImportOutcome()
        if report.records:
            columns = set(report.columns)
            rows = tuple(import_row(r, columns) for r in report.records)
            outcome = await _service(settings, engine, dry_run=dry_run).handle(ImportTechnicians(rows), SYSTEM_ACTOR)
        return result(report, outcome, dry_run=dry_run)
    finally:
        await engine.dispose()


def cmd_import_technicians(args: argparse.Namespace) -> int:
    try:
        body = asyncio.run(run_import(Settings(), args.file, dry_run=args.dry_run))
    except OSError as error:
        print(json.dumps(_unreadable(f"无法读取文件：{error}"), ensure_ascii=False))
        return EXIT_UNREADABLE
    except TicketbotError as error:
        print(json.dumps(_unreadable(error.user_message), ensure_ascii=False))
        return EXIT_UNREADABLE
    json.dump(body, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0 if body["ok"] else EXIT_REJECTED_ROWS


def _unreadable(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message, "imported": 0, "updated": 0, "failed": 1,
            "errors": [{"row": 1, "field": None, "column": None, "message": message}]}


# --- master data -----------------------------------------------------------------------------

async def run_masterdata_import(settings: Settings, kind: str, path: Path, *,
                                dry_run: bool = False) -> dict[str, Any]:
    from core.dispatch.release import ReleaseJobsOf
    from core.masterdata.imports import ImportMasterData, ImportResult
    from core.service import SYSTEM_ACTOR

    parsed = parse_file(kind, path)
    outcome = ImportResult()
    if parsed.items:
        engine = await _engine(settings)
        try:
            service = _service(settings, engine, dry_run=dry_run)
            file_ids = frozenset(getattr(item.record, "id", "") for item in parsed.items) if kind == "people" \
                else frozenset()
            # A dry run is one transaction, rolled back: later rows see what earlier ones would have written.
            size = len(parsed.items) if dry_run else BATCH_ROWS
            for start in range(0, len(parsed.items), size):
                batch = tuple(parsed.items[start:start + size])
                done: ImportResult = await service.handle(ImportMasterData(kind, batch, file_ids), SYSTEM_ACTOR)
                outcome.created += done.created
                outcome.updated += done.updated
                outcome.failures += done.failures
                if not dry_run:
                    for person_id in done.departed:
                        await service.handle(ReleaseJobsOf(person_id), SYSTEM_ACTOR)
        finally:
            await engine.dispose()
    return masterdata_result(kind, parsed, outcome, dry_run=dry_run)


def masterdata_result(kind: str, parsed: ParsedFile, outcome: Any, *, dry_run: bool) -> dict[str, Any]:
    from bot.cli.masterdata_files import KINDS as FILE_KINDS

    labels = {c.key: c.label for c in FILE_KINDS[kind].columns}
    errors = [e.to_dict() for e in parsed.errors] + [
        {"row": f.row, "field": f.field, "column": labels.get(f.field or "", f.field), "message": f.message}
        for f in outcome.failures]
    errors.sort(key=lambda e: (e["row"], e["field"] or ""))
    failed = parsed.failed_rows if parsed.header_failed else len({e["row"] for e in errors})
    return {
        "ok": not errors,
        "kind": kind,
        "dry_run": dry_run,
        "rows_read": parsed.rows_read,
        "imported": len(outcome.created),
        "updated": len(outcome.updated),
        "failed": failed,
        "errors": errors,
        "columns": parsed.columns,
        "ignored_columns": parsed.ignored_columns,
        "encoding": parsed.encoding,
    }


def cmd_import_masterdata(kind: str, path: Path, *, dry_run: bool) -> int:
    try:
        body = asyncio.run(run_masterdata_import(Settings(), kind, path, dry_run=dry_run))
    except TableFileError as error:  # a malformed file: nothing could be read from it
        print(json.dumps({**_unreadable(error.user_message), "kind": kind, "dry_run": dry_run}, ensure_ascii=False))
        return EXIT_REJECTED_ROWS
    except OSError as error:
        print(json.dumps({**_unreadable(f"无法读取文件：{error}"), "kind": kind, "dry_run": dry_run},
                         ensure_ascii=False))
        return EXIT_UNREADABLE
    json.dump(body, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0 if body["failed"] == 0 else EXIT_REJECTED_ROWS
