"""Build a database holding N historical, closed tickets spread over the past year, fast, with plain SQL.

    python bench/prefill_db.py --sqlite /tmp/100k.db --tickets 100000 [--days 365] [--audit-key KEY]
    python bench/prefill_db.py --database-url postgresql://postgres@127.0.0.1:5432/prefill --tickets 100000

What a ticket leaves behind after its life, as the service would have written it: the ticket row
(closed; its SLA state met, its acceptance recorded), 13 audit events (created, offer sent and
accepted, the status trail through check-in, work and sign-off — one in ten waits for parts — the
SLA tracks met, a position and a photo), 6 timer rows (fired or cancelled), and 4 delivered outbox
rows. The audit chain is keyed with `--audit-key` (default: the `AUDIT_KEY` environment variable)
and computed exactly as `core/audit/chain.py` computes it, so `ticketbot audit verify` passes on the
result with that key. Ticket numbers, customers (2,000 of them, plus one with `--heavy-customer`
tickets), technicians (200), stores and categories repeat so that lookups by them are realistic.

The schema comes from the models (storage.migrate.create_fresh_schema, stamped at head); the rows
are then written without the ORM: on SQLite with executemany in one transaction with the secondary
indexes dropped and rebuilt at the end (a sort per index instead of a random B-tree insert per row),
on PostgreSQL with COPY. The cost is the HMAC chain (one per event, sequential by construction):
about 4 µs per event in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.audit.chain import GENESIS_HASH, AuditKey, head_mac
from storage.database import compact_json, create_engine
from storage.migrate import create_fresh_schema

EVENTS_PER_TICKET = 13
TIMERS = ("sla.response", "sla.response.warning", "sla.resolution", "sla.resolution.warning",
          "dispatch.offer_expiry", "signoff_callback")
CATEGORIES = ("电气", "空调", "给排水", "门窗", "网络", "电梯", "消防", "照明")
PRIORITIES = ("常规", "常规", "常规", "紧急", "特急")
CUSTOMERS = 2000
TECHNICIANS = 200
STORES = 50
BATCH = 20_000  # tickets per round of statements
LOCAL_OFFSET = timedelta(hours=8)  # Asia/Shanghai, the default TIMEZONE
# The chain's canonical JSON, the encoder built once (json.dumps builds one per call for these options).
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(slots=True)
class Rows:
    tickets: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    timers: list[tuple[Any, ...]]
    outbox: list[tuple[Any, ...]]
    photos: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Shape:
    """The realistic mix (bench/prefill_shape.py): open tickets in every state, breaches, photos, signatures."""

    open_share: float  # share of all tickets still open at `end` (stuck ones; the newest are open anyway)


def _sqlite_time(value: datetime) -> str:
    return value.isoformat(" ", "microseconds")[:26]  # storage/types.py's text form, naive UTC


class Chain:
    """The audit chain as storage/unit_of_work.py appends it (core/audit/chain.py's material)."""

    def __init__(self, key: AuditKey) -> None:
        import hmac

        self._digest = hmac.digest
        self._secret = key._secret  # the HMAC computed inline: 13 per ticket, millions of them
        self.seq, self.hash = 0, GENESIS_HASH

    def append(self, kind: str, actor: str, at: datetime, ticket: str | None, payload: dict[str, Any]
               ) -> tuple[int, str, str]:
        """(seq, prev_hash, hash) of the next event."""
        self.seq += 1
        material = _CANONICAL.encode({"prev": self.hash, "seq": self.seq, "kind": kind, "actor": actor,
                                      "at": at.isoformat(), "ticket": ticket, "payload": payload})
        prev, self.hash = self.hash, self._digest(self._secret, material.encode("utf-8"), "sha256").hex()
        return self.seq, prev, self.hash


def _iso(value: datetime) -> str:
    return value.isoformat()


def _sla(due: datetime, met_at: datetime) -> dict[str, Any]:
    return {"due": _iso(due), "met_at": _iso(met_at), "met": True, "breached_at": None, "escalation_cards": [],
            "escalated_to": [], "ack_by": None, "ack_at": None, "level2_at": None, "root_cause": None}


def generate(count: int, days: int, end: datetime, chain: Chain, seed: int, heavy_customer: int,
             sqlite_times: bool, shape: Shape | None = None) -> Iterator[Rows]:
    """Batches of rows for `count` tickets created evenly over `days` days before `end`, in time order.
    With a `shape` (--full-trail / --open-share): the realistic mix of bench/prefill_shape.py instead."""
    if shape is not None:
        from bench.prefill_shape import generate_shaped

        yield from generate_shaped(count, days, end, chain, seed, heavy_customer, sqlite_times, shape, counters)
        return
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    step = (end - start - timedelta(days=3)) / max(count, 1)  # the last ones closed before `end`
    per_day: dict[str, int] = {}
    t = lambda value: _sqlite_time(value) if sqlite_times else value  # noqa: E731
    rows = Rows([], [], [], [])
    for index in range(count):
        created = start + step * index + timedelta(microseconds=rng.randrange(1_000_000))
        day = (created + LOCAL_OFFSET).strftime("%Y%m%d")  # numbered by the local day, as intake does
        per_day[day] = per_day.get(day, 0) + 1
        number = f"GD-{day}-{per_day[day]:04d}"
        ticket_id = index + 1
        customer = "cust-heavy" if index < heavy_customer else f"cust-{rng.randrange(CUSTOMERS):05d}"
        tech = f"tech-{rng.randrange(TECHNICIANS):04d}"
        category = rng.choice(CATEGORIES)
        priority = rng.choice(PRIORITIES)
        subject = f"设备-{rng.randrange(count // 4 + 1):06d}"  # an asset reported again now and then
        description = f"{subject} {category}故障，请尽快处理"
        offered = created + timedelta(seconds=rng.uniform(2, 120))
        accepted = offered + timedelta(seconds=rng.uniform(10, 900))
        checked_in = accepted + timedelta(minutes=rng.uniform(10, 120))
        started = checked_in + timedelta(minutes=rng.uniform(1, 10))
        parts = rng.random() < 0.1
        parts_back = started + timedelta(hours=rng.uniform(2, 48)) if parts else started
        done = parts_back + timedelta(minutes=rng.uniform(20, 240))
        closed = done + timedelta(hours=rng.uniform(0.5, 24))
        response_due = created + timedelta(hours=4)
        resolution_due = created + timedelta(hours=72)
        data = {
            "accepted_at": _iso(accepted),
            "sla": {"cell": f"{priority}/单用户", "priority": priority, "matrix_version": 1,
                    "response": _sla(response_due, accepted), "resolution": _sla(resolution_due, done),
                    "stopped_since": None},
            "dispatch": {"accepted": {"by": tech, "at": _iso(accepted)}, "offered": [tech]},
            "store_id": f"store-{rng.randrange(STORES):03d}",
        }
        rows.tickets.append((ticket_id, number, customer, subject, description, category, priority, "单用户",
                             "closed", tech, False, 31.2 + rng.random() * 0.1, 121.4 + rng.random() * 0.1,
                             t(created), t(closed), t(offered), t(closed), t(response_due), t(resolution_due), 9,
                             compact_json(data), data["store_id"]))
        trail: list[tuple[str, str, datetime, dict[str, Any]]] = [
            ("ticket_created", customer, created,
             {"status": "pending_dispatch", "category": category, "description": description,
              "keywords": [category], "priority": priority, "impact": "单用户"}),
            ("offer_sent", "system", created, {"technician": tech, "rank": 1}),
            ("status_changed", "system", created, {"transition": "dispatch", "from": "pending_dispatch",
                                                   "to": "dispatched"}),
            ("offer_accepted", tech, accepted, {"technician": tech}),
            ("status_changed", tech, accepted, {"transition": "accept", "from": "dispatched", "to": "accepted"}),
            ("sla_response_met", tech, accepted, {"met": True, "due": _iso(response_due)}),
            ("status_changed", tech, checked_in, {"transition": "check_in", "from": "accepted", "to": "checked_in"}),
            ("status_changed", tech, started, {"transition": "start", "from": "checked_in", "to": "in_progress"}),
        ]
        if parts:
            trail += [("status_changed", tech, started + timedelta(minutes=5),
                       {"transition": "wait_parts", "from": "in_progress", "to": "waiting_parts"}),
                      ("status_changed", "system", parts_back,
                       {"transition": "parts_ready", "from": "waiting_parts", "to": "in_progress"})]
        else:
            trail += [("location_shared", tech, checked_in, {"lat": 31.2, "lng": 121.4, "purpose": "checkin"}),
                      ("photo_added", tech, done, {"sha256": f"{ticket_id:064x}", "size": 120_000,
                                                    "purpose": "after", "path": f"photos/{number}/1.jpg"})]
        trail += [
            ("status_changed", tech, done, {"transition": "complete", "from": "in_progress",
                                            "to": "pending_signoff"}),
            ("sla_resolution_met", tech, done, {"met": True, "due": _iso(resolution_due)}),
            ("status_changed", customer, closed, {"transition": "sign_off", "from": "pending_signoff",
                                                  "to": "closed"}),
        ]
        for kind, actor, at, payload in trail:
            seq, prev, digest = chain.append(kind, actor, at, number, payload)
            rows.events.append((seq, number, actor, t(at), kind, compact_json(payload), prev, digest))
        for n, kind in enumerate(TIMERS):
            due = created + timedelta(hours=n + 1)
            state = "fired" if n % 3 == 0 else "cancelled"
            rows.timers.append((kind, number, t(due), 1, state, "{}", t(due) if state == "fired" else None))
        for recipient, what in ((tech, "offer"), (customer, "created"), (customer, "accepted"), (customer, "closed")):
            message = compact_json({"kind": what, "ticket": number, "title": f"工单 {number}"})
            rows.outbox.append((recipient, "local", message, "{}", "sent", 1, t(created), t(created), t(closed)))
        if len(rows.tickets) >= BATCH:
            yield rows
            rows = Rows([], [], [], [])
    if rows.tickets:
        yield rows
    counters.clear()
    counters.update(per_day)


counters: dict[str, int] = {}  # the ticket_counters rows of the last `generate`: day -> last number

TICKET_COLUMNS = ("id", "number", "customer_id", "subject", "description", "category", "priority", "impact",
                  "status", "assignee_id", "needs_review", "site_lat", "site_lng", "created_at", "updated_at",
                  "first_response_at", "closed_at", "response_due", "resolution_due", "version", "data", "store_id")
EVENT_COLUMNS = ("seq", "ticket_number", "actor_id", "at", "kind", "payload", "prev_hash", "hash")
TIMER_COLUMNS = ("kind", "ticket_key", "due_at", "generation", "state", "payload", "fired_at")
PHOTO_COLUMNS = ("ticket_number", "uploader_id", "sha256", "path", "size", "purpose", "created_at")
OUTBOX_COLUMNS = ("recipient_id", "channel", "payload", "reply_context", "status", "attempts", "created_at",
                  "next_attempt_at", "sent_at")


async def create_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        if not await create_fresh_schema(engine):
            raise SystemExit(f"{url} already has tables: give an empty database")
    finally:
        await engine.dispose()


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def fill_sqlite(path: Path, args: argparse.Namespace, key: AuditKey, end: datetime) -> None:
    asyncio.run(create_schema(f"sqlite:///{path}"))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")  # a scratch build: no log, rebuilt from scratch on failure
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-400000")
    indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL AND tbl_name IN"
                         " ('tickets','audit_events','timers','outbox','photos')").fetchall()
    db.execute("BEGIN")
    for name, _ in indexes:
        db.execute(f"DROP INDEX {name}")
    chain = Chain(key)
    began = time.perf_counter()
    done = 0
    shape = _shape(args)
    if shape is not None:
        from bench.prefill_shape import masterdata

        for table, (columns, values) in masterdata(STORES, TECHNICIANS, CUSTOMERS, True, end).items():
            db.executemany(_insert(table, columns), values)
    for rows in generate(args.tickets, args.days, end, chain, args.seed, args.heavy_customer, True, shape):
        db.executemany(_insert("tickets", TICKET_COLUMNS), rows.tickets)
        db.executemany(_insert("audit_events", EVENT_COLUMNS), rows.events)
        db.executemany(_insert("timers", TIMER_COLUMNS), rows.timers)
        db.executemany(_insert("outbox", OUTBOX_COLUMNS), rows.outbox)
        db.executemany(_insert("photos", PHOTO_COLUMNS), rows.photos)
        done += len(rows.tickets)
        _progress(done, args.tickets, began)
    _finish_rows(db, chain, key)
    print(f"\nrows written in {time.perf_counter() - began:.0f} s; building {len(indexes)} indexes", file=sys.stderr)
    for name, sql in indexes:
        if name in args.skip_index:
            continue
        db.execute(sql)
    db.execute("COMMIT")
    if args.analyze:
        db.execute("ANALYZE")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()


def _shape(args: argparse.Namespace) -> Shape | None:
    if not args.full_trail and not args.open_share:
        return None
    return Shape(open_share=args.open_share)


def add_missing_tables(path: Path) -> None:
    """Create the tables the models have and the file lacks (tables added after the file was built; its
    alembic stamp is left alone). Columns added to existing tables are not handled."""
    from sqlalchemy import create_engine as create_sync_engine
    from sqlmodel import SQLModel

    import storage.tables  # noqa: F401  (registers every table)

    engine = create_sync_engine(f"sqlite:///{path}")
    try:
        SQLModel.metadata.create_all(engine, checkfirst=True)
    finally:
        engine.dispose()


def _finish_rows(db: sqlite3.Connection, chain: Chain, key: AuditKey) -> None:
    db.execute("DELETE FROM audit_head")
    db.execute("INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, ?, ?, ?)",
               (chain.seq, chain.hash, head_mac(key, chain.seq, chain.hash)))
    db.executemany("INSERT INTO ticket_counters (day, last) VALUES (?, ?)",
                   [(f"{day[:4]}-{day[4:6]}-{day[6:]}", last) for day, last in counters.items()])


def _progress(done: int, total: int, began: float) -> None:
    elapsed = time.perf_counter() - began
    print(f"\r{done:>9,}/{total:,} tickets  {elapsed:6.0f} s  {done / max(elapsed, 1e-9):8.0f}/s",
          end="", file=sys.stderr, flush=True)


async def fill_postgres(url: str, args: argparse.Namespace, key: AuditKey, end: datetime) -> None:
    import asyncpg

    await create_schema(url)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        chain = Chain(key)
        began = time.perf_counter()
        done = 0
        shape = _shape(args)
        async with conn.transaction():
            if shape is not None:
                from bench.prefill_shape import masterdata

                for table, (columns, values) in masterdata(STORES, TECHNICIANS, CUSTOMERS, False, end).items():
                    await _copy(conn, table, columns, values)
            for rows in generate(args.tickets, args.days, end, chain, args.seed, args.heavy_customer, False, shape):
                await _copy(conn, "tickets", TICKET_COLUMNS, rows.tickets)
                await _copy(conn, "audit_events", EVENT_COLUMNS, rows.events)
                await _copy(conn, "timers", TIMER_COLUMNS, rows.timers)
                await _copy(conn, "outbox", OUTBOX_COLUMNS, rows.outbox)
                if rows.photos:
                    await _copy(conn, "photos", PHOTO_COLUMNS, rows.photos)
                done += len(rows.tickets)
                _progress(done, args.tickets, began)
            await conn.execute("DELETE FROM audit_head")
            await conn.execute("INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, $1, $2, $3)",
                               chain.seq, chain.hash, head_mac(key, chain.seq, chain.hash))
            await _counters_pg(conn)
            await conn.execute("SELECT setval(pg_get_serial_sequence('tickets', 'id'), $1)", max(args.tickets, 1))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _copy(conn: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    # JSON columns go as text; asyncpg's binary COPY wants json as str, which compact_json gave.
    await conn.copy_records_to_table(table, records=rows, columns=list(columns))


async def _counters_pg(conn: Any) -> None:
    await conn.executemany("INSERT INTO ticket_counters (day, last) VALUES ($1, $2)",
                           [(datetime.strptime(day, "%Y%m%d").date(), last) for day, last in counters.items()])


def _events(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT max(seq) FROM audit_events").fetchone()[0] or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--sqlite", type=Path, metavar="FILE", help="a new SQLite file (must not exist)")
    target.add_argument("--database-url", metavar="URL", help="an empty PostgreSQL database")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--end", type=datetime.fromisoformat, default=None,
                        help="the newest ticket's time (default: now); tickets close up to 3 days before it")
    parser.add_argument("--audit-key", default=os.environ.get("AUDIT_KEY"),
                        help="the chain's key (default: $AUDIT_KEY); give the service the same AUDIT_KEY")
    parser.add_argument("--heavy-customer", type=int, default=1000,
                        help="tickets of the customer `cust-heavy` (the 进度 benchmark's)")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--skip-index", action="append", default=[],
                        help="(SQLite) leave this index out, to measure without it")
    parser.add_argument("--analyze", action="store_true", help="(SQLite) run ANALYZE at the end")
    parser.add_argument("--full-trail", action="store_true",
                        help="the realistic mix (bench/prefill_shape.py): stores, people, priorities with their "
                             "deadlines, breaches, check-in and work photos, signatures, reopened tickets; tickets "
                             "run up to --end, the newest still open")
    parser.add_argument("--open-share", type=float, default=0.0,
                        help="with --full-trail: share of all tickets stuck open in some state (from the last "
                             "30 days; e.g. 0.01)")
    parser.add_argument("--add-missing-tables", action="store_true",
                        help="(SQLite) on an existing file: create tables added to the models since it was built")
    args = parser.parse_args(argv)
    if not args.audit_key:
        parser.error("give --audit-key or set AUDIT_KEY (the service must be run with the same key)")
    key = AuditKey(args.audit_key.strip().encode("utf-8"))  # as bot/audit_key.py reads AUDIT_KEY
    end = (args.end or datetime.now(UTC)).astimezone(UTC)
    began = time.perf_counter()
    if args.add_missing_tables:
        if args.sqlite is None or not args.sqlite.exists():
            parser.error("--add-missing-tables needs --sqlite FILE of an existing file")
        add_missing_tables(args.sqlite)
        return 0
    if args.sqlite is not None:
        if args.sqlite.exists():
            parser.error(f"{args.sqlite} exists: give a new file")
        fill_sqlite(args.sqlite, args, key, end)
        size = args.sqlite.stat().st_size
        print(f"{args.sqlite}: {args.tickets:,} tickets, {_events(args.sqlite):,} audit events, "
              f"{size / 2**20:,.0f} MiB in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    else:
        asyncio.run(fill_postgres(args.database_url, args, key, end))
        print(f"{args.database_url}: {args.tickets:,} tickets in {time.perf_counter() - began:.0f} s",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
