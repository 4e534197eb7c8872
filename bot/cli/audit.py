"""`ticketbot audit verify [--anchor FILE] [--resume FILE]` and `ticketbot audit anchor`.

verify: exit 0 when the chain is intact (and reaches the anchor, if given), 1 with the problems listed
when it is not, 2 when it cannot run (the anchor file, the key or the database is unusable).
anchor: the head as JSON `{"seq", "hash", "time"}` (time: the head event's) for an operator to keep
where the database's users cannot write; only for a chain that verifies (else exit 1, problems on stderr).
--resume FILE: a checkpoint file (created if missing). The run continues after the checkpoint it holds,
and writes a new one there every million events while nothing is wrong, and at the end of a clean run:
an interrupted run resumes where it got to, and a nightly run checks only the events added since the
last one. The checkpoint carries a MAC under the audit key; one that does not match is refused (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import TextIO

from bot.settings import Settings
from core.audit.chain import Anchor, AuditKey, ChainProblem, ChainReport, Checkpoint


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser("audit", help="audit trail tools")
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    verify = actions.add_parser("verify", help="check the audit hash chain; exit 1 when tampered")
    verify.add_argument("--anchor", type=Path, metavar="FILE",
                        help="an anchor from `ticketbot audit anchor`: fail unless the chain still reaches it")
    verify.add_argument("--resume", type=Path, metavar="FILE",
                        help="checkpoint file: continue after the checkpoint in it (if any) and keep it updated")
    verify.set_defaults(func=cmd_verify)
    anchor = actions.add_parser("anchor", help="print the chain's head as JSON (seq, hash, time) to keep elsewhere")
    anchor.set_defaults(func=cmd_anchor)


class CannotCheck(Exception):
    """The check could not run (exit 2): an unusable key, an unreadable database."""


def _check(anchor: Anchor | None, resume: Path | None = None) -> ChainReport:
    from sqlalchemy.exc import SQLAlchemyError

    from bot.audit_key import AuditKeyError, load_audit_key
    from storage.audit_verify import check_audit
    from storage.database import create_engine, session_factory

    settings = Settings()
    try:
        key = load_audit_key(settings)
    except AuditKeyError as error:
        raise CannotCheck(str(error)) from None

    start = _read_checkpoint(resume, key) if resume is not None else None

    def save(checkpoint: Checkpoint) -> None:
        assert resume is not None
        partial = resume.with_name(resume.name + ".tmp")  # replaced whole: an interrupted write leaves the old one
        partial.write_text(checkpoint.to_json(key), encoding="utf-8")
        partial.replace(resume)

    async def run() -> ChainReport:
        engine = create_engine(settings.resolved_database_url())
        try:
            return await check_audit(session_factory(engine), key=key, anchor=anchor, resume=start,
                                     on_checkpoint=save if resume is not None else None)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (SQLAlchemyError, OSError, sqlite3.Error) as error:  # sqlite3: the check's own read connection
        raise CannotCheck(f"cannot read the audit trail: {type(error).__name__}: {error}") from None


def _read_checkpoint(path: Path, key: AuditKey) -> Checkpoint | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None  # the first run: it starts from the beginning and creates the file
    except OSError as error:
        raise CannotCheck(f"cannot read the checkpoint {path}: {error}") from None
    try:
        return Checkpoint.from_json(text, key)
    except ValueError as error:
        raise CannotCheck(f"cannot use the checkpoint {path}: {error}; delete it to verify from the start") from None


def _print_problems(problems: list[ChainProblem], out: TextIO) -> None:
    for problem in problems:
        print(f"#{problem.seq}: {problem.reason}" if problem.seq is not None else f"- {problem.reason}", file=out)


def cmd_verify(args: argparse.Namespace) -> int:
    anchor = None
    if args.anchor is not None:
        try:
            anchor = Anchor.from_json(args.anchor.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            print(f"cannot use the anchor {args.anchor}: {error}", file=sys.stderr)
            return 2
    try:
        report = _check(anchor, args.resume)
    except CannotCheck as error:
        print(str(error), file=sys.stderr)
        return 2
    if not report.ok:
        _print_problems(report.problems, sys.stdout)
        print(f"audit chain BROKEN: {len(report.problems)} problem(s) in {report.count} events")
        return 1
    notes = []
    if report.sealed_by is not None:
        notes.append(f"events 1–{report.legacy_until} predate the audit key and are sealed by #{report.sealed_by}")
    if anchor is not None:
        notes.append(f"reaches the anchor #{anchor.seq}")
    if args.resume is not None:
        notes.append(f"checkpoint in {args.resume}")
    print(f"audit chain OK: {report.count} events" + (f" ({'; '.join(notes)})" if notes else ""))
    return 0


def cmd_anchor(_args: argparse.Namespace) -> int:
    try:
        report = _check(None)
    except CannotCheck as error:
        print(str(error), file=sys.stderr)
        return 2
    if not report.ok:
        _print_problems(report.problems, sys.stderr)
        print(f"audit chain BROKEN: {len(report.problems)} problem(s) in {report.count} events; no anchor",
              file=sys.stderr)
        return 1
    print(report.anchor().to_json())
    return 0
