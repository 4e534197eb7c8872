"""`ticketbot audit verify` / `audit anchor`: walk the keyed hash chain in the database, cross-check
that every ticket has its creation event, and (given an anchor) that the chain still reaches it.

The chain is read in batches of `BATCH` events by seq (keyset: `seq > last`, the primary key), all in
one read transaction, so memory stays flat at any length (13 M events at a million tickets) and the
check sees one snapshot. A run may start from a `Checkpoint` (core/audit/chain.py) and hands one to
`on_checkpoint` every `checkpoint_every` events while nothing is wrong; the ticket-creation check is
one query (an indexed lookup per ticket), not a set of every ticket in memory. On SQLite the check
reads on a read-only connection of its own in a deferred transaction: the service's transactions begin
with BEGIN IMMEDIATE, and holding the write lock for the minute a million tickets' chain takes would
stop a running service's writes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from core.audit.chain import (
    MAX_LISTED,
    SEAL_KIND,
    TICKET_CREATED,
    Anchor,
    AuditKey,
    ChainHead,
    ChainProblem,
    ChainReport,
    ChainRow,
    ChainVerifier,
    Checkpoint,
    check_ticket_creations,
)
from storage.audit_keys import audit_key_for
from storage.database import parse_json, sqlite_path
from storage.sqlite.inline import InlineSQLiteDialect
from storage.tables import AuditEventRow, AuditHeadRow, TicketRow

BATCH = 20_000
CHECKPOINT_EVERY = 1_000_000

_COLUMNS = (col(AuditEventRow.seq), col(AuditEventRow.kind), col(AuditEventRow.actor_id), col(AuditEventRow.at),
            col(AuditEventRow.ticket_number), col(AuditEventRow.payload), col(AuditEventRow.prev_hash),
            col(AuditEventRow.hash))
_FIRST = select(*_COLUMNS).order_by(col(AuditEventRow.seq))
_RAW = "SELECT seq, kind, actor_id, at, ticket_number, payload, prev_hash, hash FROM audit_events"
_SEAL = select(func.min(col(AuditEventRow.seq))).where(col(AuditEventRow.kind) == SEAL_KIND)
_UNCREATED = (select(col(TicketRow.number)).where(~exists().where(
    col(AuditEventRow.ticket_number) == col(TicketRow.number), col(AuditEventRow.kind) == TICKET_CREATED)))


async def verify_audit(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, list[ChainProblem]]:
    """(events, problems) under the key bound to the sessions' engine."""
    report = await check_audit(sessions)
    return report.count, report.problems


async def check_audit(sessions: async_sessionmaker[AsyncSession], *, key: AuditKey | None = None,
                      anchor: Anchor | None = None, resume: Checkpoint | None = None,
                      on_checkpoint: Callable[[Checkpoint], None] | None = None,
                      checkpoint_every: int = CHECKPOINT_EVERY, batch: int = BATCH) -> ChainReport:
    """`key`: default, the one bound to the sessions' engine (storage/audit_keys.py). `resume`: check
    only the events after this checkpoint (that its event is still there, unchanged, is checked)."""
    engine = sessions.kw["bind"]
    key = key or audit_key_for(engine)
    path = sqlite_path(engine.url.render_as_string(hide_password=False))
    if path is not None and isinstance(engine.dialect, InlineSQLiteDialect):
        # A connection of its own in a deferred (read) transaction: the service's sessions begin with
        # BEGIN IMMEDIATE, and a minute-long check holding the write lock would stop a running service.
        reader: _Reader = _SqliteReader(path)
        try:
            return await _check(reader, key, anchor, resume, on_checkpoint, checkpoint_every, batch)
        finally:
            reader.close()
    async with sessions() as session, session.begin():  # one snapshot of rows, head and tickets
        return await _check(_SessionReader(session), key, anchor, resume, on_checkpoint, checkpoint_every, batch)


async def _check(reader: _Reader, key: AuditKey, anchor: Anchor | None, resume: Checkpoint | None,
                 on_checkpoint: Callable[[Checkpoint], None] | None, checkpoint_every: int, batch: int
                 ) -> ChainReport:
    head = await reader.head()
    seal_seq = await reader.seal()
    if resume is not None:
        moved = _checkpoint_problem(resume, await reader.hash_at(resume.seq) if resume.seq else None, seal_seq)
        if moved is not None:
            return ChainReport(count=resume.count, problems=[moved])
    verifier = ChainVerifier(key=key, head=head, seal_seq=seal_seq, start=resume)
    last_checkpoint = verifier.report.count
    to_row, matches = reader.to_row, _fast_match(key, reader.at_and_payload)
    needs_row = verifier.needs_row
    async for rows in reader.batches(None if resume is None else resume.seq, batch):
        verifier.feed_links(((r[0], r[6], r[7], None if not needs_row(r[0]) and matches(r) else to_row(r))
                             for r in rows), to_row(rows[-1]))
        del rows
        if on_checkpoint is not None and verifier.clean and verifier.report.count - last_checkpoint >= \
                checkpoint_every:
            on_checkpoint(verifier.checkpoint())
            last_checkpoint = verifier.report.count
    report = verifier.finish()
    if on_checkpoint is not None and report.ok and verifier.report.count != last_checkpoint:
        on_checkpoint(verifier.checkpoint())
    numbers = await reader.uncreated(MAX_LISTED + 1)
    report.problems.extend(check_ticket_creations(numbers[:MAX_LISTED], ()))  # the query found them without one
    if len(numbers) > MAX_LISTED:
        total = await reader.uncreated_count()
        report.problems.append(ChainProblem(None, f"另有 {total - MAX_LISTED} 张工单没有创建事件，未逐条列出"))
    if anchor is not None and anchor.seq != 0:
        report.problems.extend(_anchor_problems(anchor, await reader.hash_at(anchor.seq)))
    return report


class _Reader:
    """What a check reads, in one snapshot."""

    async def head(self) -> ChainHead | None:
        raise NotImplementedError

    async def seal(self) -> int | None:
        raise NotImplementedError

    async def hash_at(self, seq: int) -> str | None:
        raise NotImplementedError

    def batches(self, after: int | None, size: int) -> AsyncIterator[Sequence[RawRow]]:
        raise NotImplementedError

    def to_row(self, r: RawRow) -> ChainRow:
        raise NotImplementedError

    def at_and_payload(self, r: RawRow) -> tuple[str | None, Any]:
        raise NotImplementedError

    async def uncreated(self, limit: int) -> list[str]:
        raise NotImplementedError

    async def uncreated_count(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _SessionReader(_Reader):
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def head(self) -> ChainHead | None:
        stored = await self.session.get(AuditHeadRow, 1)
        return ChainHead(stored.seq, stored.hash, stored.mac) if stored is not None else None

    async def seal(self) -> int | None:
        return (await self.session.execute(_SEAL)).scalar()

    async def hash_at(self, seq: int) -> str | None:
        return (await self.session.execute(
            select(col(AuditEventRow.hash)).where(col(AuditEventRow.seq) == seq))).scalar()

    async def batches(self, after: int | None, size: int) -> AsyncIterator[Sequence[RawRow]]:
        connection = await self.session.connection()
        # The first batch has no lower bound: a row slipped in below seq 1 must be seen too.
        statement = _FIRST if after is None else _FIRST.where(col(AuditEventRow.seq) > after)
        while True:
            rows = (await connection.execute(statement.limit(size))).all()
            if not rows:
                return
            yield rows
            statement = _FIRST.where(col(AuditEventRow.seq) > rows[-1][0])

    def to_row(self, r: RawRow) -> ChainRow:
        return ChainRow(seq=r[0], kind=r[1], actor_id=r[2], at=r[3], ticket_number=r[4], payload=r[5],
                        prev_hash=r[6], hash=r[7])

    def at_and_payload(self, r: RawRow) -> tuple[str | None, Any]:
        return r[3].isoformat(), r[5]

    async def uncreated(self, limit: int) -> list[str]:
        return [str(n) for n in (await self.session.execute(
            _UNCREATED.order_by(col(TicketRow.number)).limit(limit))).scalars()]

    async def uncreated_count(self) -> int:
        return int((await self.session.execute(select(func.count()).select_from(_UNCREATED.subquery()))).scalar_one())


class _SqliteReader(_Reader):
    """The SQLite file on a read-only connection of its own, the rows without SQLAlchemy's processing
    (converted as storage/types.py and the JSON columns do)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, isolation_level=None)
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute("BEGIN")  # deferred: the first read takes the snapshot every later one sees

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("ROLLBACK")
        self.db.close()

    async def head(self) -> ChainHead | None:
        row = self.db.execute("SELECT seq, hash, mac FROM audit_head WHERE id = 1").fetchone()
        return ChainHead(int(row[0]), str(row[1]), row[2]) if row is not None else None

    async def seal(self) -> int | None:
        row = self.db.execute("SELECT min(seq) FROM audit_events WHERE kind = ?", (SEAL_KIND,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def hash_at(self, seq: int) -> str | None:
        row = self.db.execute("SELECT hash FROM audit_events WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    async def batches(self, after: int | None, size: int) -> AsyncIterator[Sequence[RawRow]]:
        while True:
            if after is None:  # no lower bound: a row slipped in below seq 1 must be seen too
                rows = self.db.execute(f"{_RAW} ORDER BY seq LIMIT ?", (size,)).fetchall()
            else:
                rows = self.db.execute(f"{_RAW} WHERE seq > ? ORDER BY seq LIMIT ?", (after, size)).fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def to_row(self, r: RawRow) -> ChainRow:
        return ChainRow(seq=r[0], kind=r[1], actor_id=r[2], at=datetime.fromisoformat(r[3]).replace(tzinfo=UTC),
                        ticket_number=r[4], payload=parse_json(r[5]), prev_hash=r[6], hash=r[7])

    def at_and_payload(self, r: RawRow) -> tuple[str | None, Any]:
        return _sqlite_at(r)

    async def uncreated(self, limit: int) -> list[str]:
        return [str(n) for (n,) in self.db.execute(f"{_UNCREATED_SQL} ORDER BY number LIMIT ?",
                                                    (TICKET_CREATED, limit))]

    async def uncreated_count(self) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM ({_UNCREATED_SQL})", (TICKET_CREATED,)).fetchone()[0])


_UNCREATED_SQL = ("SELECT number FROM tickets WHERE NOT EXISTS (SELECT 1 FROM audit_events"
                  " WHERE audit_events.ticket_number = tickets.number AND audit_events.kind = ?)")


# A batch is a list of raw rows (seq, kind, actor_id, at, ticket_number, payload, prev_hash, hash), made
# into ChainRows only where the verifier needs one: building 13 M frozen dataclasses costs ~25 s.
RawRow = Sequence[Any]


def _sqlite_at(r: RawRow) -> tuple[str | None, Any]:
    """`at.isoformat()` and the payload of a stored row, straight from SQLite's text. storage/types.py
    writes "YYYY-MM-DD HH:MM:SS.ffffff" (naive UTC); isoformat leaves out a zero fraction. None:
    another form, left to the exact path."""
    text = r[3]
    if len(text) != 26 or text[10] != " " or text[19] != ".":
        return None, None
    fraction = "" if text.endswith("000000") else text[19:]
    return f"{text[:10]}T{text[11:19]}{fraction}+00:00", parse_json(r[5])


def _fast_match(key: AuditKey, at_and_payload: Callable[[RawRow], tuple[str | None, Any]]
                ) -> Callable[[RawRow], bool]:
    """A cheaper check of a row's keyed hash: the material encoded by orjson (sorted keys) instead
    of the standard library's canonical JSON, several times faster. True only when the HMAC matches,
    and a match proves the row: equal material text means equal content. False may be a difference
    in encoding alone (floats, escapes), so the verifier then computes the canonical hash."""
    dumps, sort, mac = orjson.dumps, orjson.OPT_SORT_KEYS, key.mac_bytes

    def matches(r: RawRow) -> bool:
        at, payload = at_and_payload(r)
        if at is None:
            return False
        try:
            material = dumps({"prev": r[6], "seq": r[0], "kind": r[1], "actor": r[2], "at": at, "ticket": r[4],
                              "payload": payload}, option=sort)
        except TypeError:  # e.g. an integer beyond 64 bits: the canonical path decides
            return False
        return bool(mac(material) == r[7])

    return matches


def _checkpoint_problem(checkpoint: Checkpoint, stored: str | None, seal_seq: int | None) -> ChainProblem | None:
    """`stored`: the hash now at the checkpoint's seq."""
    if checkpoint.seq == 0:
        return None
    if stored is None:
        return ChainProblem(checkpoint.seq, f"检查点序号 {checkpoint.seq} 的记录已不存在（链被截断、回滚或清空）；"
                                            "请不带 --resume 完整校验一次")
    if stored != checkpoint.hash:
        return ChainProblem(checkpoint.seq, f"序号 {checkpoint.seq} 的哈希与检查点不同（记录被改写，或整条链被重写）；"
                                            "请不带 --resume 完整校验一次")
    if seal_seq != checkpoint.sealed_by and (seal_seq is None or seal_seq <= checkpoint.seq):
        return ChainProblem(None, "封存记录的位置与检查点不同（链被改写）；请不带 --resume 完整校验一次")
    return None


def _anchor_problems(anchor: Anchor, stored: str | None) -> list[ChainProblem]:
    """The chain must still hold the anchored event, unchanged (core/audit/chain.py's check_anchor)."""
    if stored is None:
        return [ChainProblem(anchor.seq, f"链已不再到达锚点：序号 {anchor.seq} 的记录不存在（链被截断、回滚或清空）")]
    if stored != anchor.hash:
        return [ChainProblem(anchor.seq, f"序号 {anchor.seq} 的哈希与锚点不同（记录被改写，或整条链被重写）")]
    return []
