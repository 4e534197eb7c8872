"""The audit chain's verification for one ticket, cheap enough for every page view of its file.

`ticketbot audit verify` walks the whole chain; here only the ticket's events are checked: each event's
keyed hash (recomputed under the audit key, or the unkeyed hash for events written before keys, up to
the seal), and its links — the event before it in the chain ends with the hash this one starts from,
and the event after it starts from this one's hash — so an edited, deleted or reordered event of this
ticket shows. Two indexed lookups (the neighbours by seq) besides the events the page reads anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlmodel import col

from core.audit.chain import SEAL_KIND, ChainRow
from core.model import AuditEvent
from storage.audit_keys import audit_key_for
from storage.database import Sessions
from storage.tables import AuditEventRow


@dataclass(frozen=True, slots=True)
class TrailCheck:
    checked: int
    problems: list[str] = field(default_factory=list)
    head_seq: int | None = None  # the chain's last event when checked

    @property
    def ok(self) -> bool:
        return not self.problems


async def check_ticket_trail(sessions: Sessions, events: Sequence[AuditEvent]) -> TrailCheck:
    if not events:
        return TrailCheck(0, ["这张工单没有审计记录（连创建事件都没有）。"])
    key = audit_key_for(sessions.kw["bind"])
    seqs = [int(e.id or 0) for e in events]
    async with sessions.transaction() as conn:
        seal = (await conn.execute(select(func.min(col(AuditEventRow.seq))).where(
            col(AuditEventRow.kind) == SEAL_KIND))).scalar()
        neighbours = {int(s): (str(p), str(h)) for s, p, h in await conn.execute(
            select(col(AuditEventRow.seq), col(AuditEventRow.prev_hash), col(AuditEventRow.hash)).where(
                col(AuditEventRow.seq).in_(sorted({s - 1 for s in seqs} | {s + 1 for s in seqs}))))}
        head = (await conn.execute(select(func.max(col(AuditEventRow.seq))))).scalar()
    problems: list[str] = []
    if events[0].kind != "ticket_created":
        problems.append(f"第一条记录不是「创建工单」（而是 {events[0].kind}）：创建记录缺失。")
    for event in events:
        seq = int(event.id or 0)
        row = ChainRow(seq=seq, kind=event.kind, actor_id=event.actor_id, at=event.at,
                       ticket_number=event.ticket_number, payload=event.payload, prev_hash=str(event.prev_hash),
                       hash=str(event.hash))
        legacy = seal is not None and seq < int(seal)
        expected = row.legacy_hash() if legacy else row.keyed_hash(key)
        if expected != row.hash:
            problems.append(f"记录 #{seq}（{event.kind}）的内容与其哈希不符：被改动过。")
        before = neighbours.get(seq - 1)
        if seq > 1 and (before is None or before[1] != row.prev_hash):
            problems.append(f"记录 #{seq} 之前的记录缺失或被改动（链断开）。")
        after = neighbours.get(seq + 1)
        if after is not None and after[0] != row.hash:
            problems.append(f"记录 #{seq} 之后的记录与它接不上（链断开）。")
        elif after is None and head is not None and seq < int(head):
            problems.append(f"记录 #{seq} 之后的记录缺失（链断开）。")
    return TrailCheck(len(events), problems, int(head) if head is not None else None)
