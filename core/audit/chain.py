"""The audit chain: each event's hash is an HMAC-SHA256, under the deployment's audit key, of the event
and the previous event's hash, so an edited, inserted, deleted or reordered row breaks the chain and
nobody without the key can compute a replacement. The head (last seq and hash) carries a MAC of its
own, so deleting the last events and moving the head back shows too.

Events written before keys existed (plain SHA-256) stay as they were: the first keyed event, a seal
(`SEAL_KIND`), records where they end, and its MAC covers their last hash. What the database alone
cannot reveal — a rollback to an earlier copy of itself, or a wipe of everything — is caught by an
anchor (the head, kept elsewhere) that the chain must still reach. Decisions: docs/operations.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64
# The first keyed event of a chain that began before keys: {"legacy_until": seq, "legacy_head": hash}.
SEAL_KIND = "audit_chain_keyed"
SEAL_ACTOR = "system"
TICKET_CREATED = "ticket_created"


class AuditKey:
    """The secret the chain is keyed with. Its repr never shows it (it ends up in logs otherwise)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the audit key is empty")
        self._secret = secret

    def mac(self, material: str) -> str:
        return hmac.digest(self._secret, material.encode("utf-8"), "sha256").hex()

    def __repr__(self) -> str:
        return "AuditKey(***)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuditKey) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._secret).digest())


def canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _material(*, prev_hash: str, seq: int, kind: str, actor_id: str, at: datetime, ticket_number: str | None,
              payload: Any) -> str:
    # The sequence number is covered so that deleting or reordering rows is detected, not only editing one.
    return canonical_json({"prev": prev_hash, "seq": seq, "kind": kind, "actor": actor_id, "at": at.isoformat(),
                           "ticket": ticket_number, "payload": payload})


def event_hash(key: AuditKey, *, prev_hash: str, seq: int, kind: str, actor_id: str, at: datetime,
               ticket_number: str | None, payload: Any) -> str:
    return key.mac(_material(prev_hash=prev_hash, seq=seq, kind=kind, actor_id=actor_id, at=at,
                             ticket_number=ticket_number, payload=payload))


def legacy_event_hash(*, prev_hash: str, seq: int, kind: str, actor_id: str, at: datetime,
                      ticket_number: str | None, payload: Any) -> str:
    """The unkeyed hash of events written before keys existed; only ever checked, never written."""
    material = _material(prev_hash=prev_hash, seq=seq, kind=kind, actor_id=actor_id, at=at,
                         ticket_number=ticket_number, payload=payload)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def head_mac(key: AuditKey, seq: int, hash_: str) -> str:
    """The head's own MAC: a head moved back to an earlier event would need the key to carry one."""
    return key.mac(canonical_json({"head_seq": seq, "head_hash": hash_}))


def seal_payload(legacy_until: int, legacy_head: str) -> dict[str, Any]:
    return {"legacy_until": legacy_until, "legacy_head": legacy_head}


@dataclass(frozen=True, slots=True)
class ChainRow:
    seq: int
    kind: str
    actor_id: str
    at: datetime
    ticket_number: str | None
    payload: Any
    prev_hash: str
    hash: str

    def keyed_hash(self, key: AuditKey) -> str:
        return event_hash(key, prev_hash=self.prev_hash, seq=self.seq, kind=self.kind, actor_id=self.actor_id,
                          at=self.at, ticket_number=self.ticket_number, payload=self.payload)

    def legacy_hash(self) -> str:
        return legacy_event_hash(prev_hash=self.prev_hash, seq=self.seq, kind=self.kind, actor_id=self.actor_id,
                                 at=self.at, ticket_number=self.ticket_number, payload=self.payload)


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The stored head row: the last event's seq and hash, and the head's MAC (None: never keyed)."""

    seq: int
    hash: str
    mac: str | None


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int | None  # None: not about one event (a ticket, the head)
    reason: str


@dataclass(frozen=True, slots=True)
class Anchor:
    """A head an operator kept elsewhere (`ticketbot audit anchor`): the chain must still reach it."""

    seq: int
    hash: str
    time: datetime | None = None

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash,
                           "time": self.time.isoformat() if self.time else None})

    @classmethod
    def from_json(cls, text: str) -> Anchor:
        """ValueError when it is not an anchor."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        seq, hash_, time = data.get("seq"), data.get("hash"), data.get("time")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError('"seq" must be a whole number ≥ 0')
        if not isinstance(hash_, str) or len(hash_) != 64 or any(c not in "0123456789abcdef" for c in hash_):
            raise ValueError('"hash" must be 64 lowercase hex digits')
        if time is not None and not isinstance(time, str):
            raise ValueError('"time" must be an ISO 8601 string or null')
        return cls(seq, hash_, datetime.fromisoformat(time) if time else None)


@dataclass(slots=True)
class ChainReport:
    count: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    last: ChainRow | None = None  # the chain's last event
    legacy_until: int = 0  # events 1..legacy_until predate the key (plain SHA-256)
    sealed_by: int | None = None  # seq of the seal that covers them

    @property
    def ok(self) -> bool:
        return not self.problems

    def anchor(self) -> Anchor:
        if self.last is None:
            return Anchor(0, GENESIS_HASH, None)
        return Anchor(self.last.seq, self.last.hash, self.last.at)


def _seal_of(rows: Sequence[ChainRow]) -> ChainRow | None:
    """The seal that ends the events from before keys: the first event of its kind, wherever it is
    (one an attacker forged anywhere fails its MAC like any other keyed event)."""
    return next((row for row in rows if row.kind == SEAL_KIND), None)


def verify_chain(rows: Sequence[ChainRow], *, key: AuditKey, head: ChainHead | None) -> ChainReport:
    """Check rows (ordered by seq) link up from genesis to the recorded head, under `key`."""
    report = ChainReport(count=len(rows), last=rows[-1] if rows else None)
    seal = _seal_of(rows)
    unsealed = False
    if seal is not None:
        report.legacy_until, report.sealed_by = seal.seq - 1, seal.seq
    elif rows and (head is None or head.mac is None) and all(r.legacy_hash() == r.hash for r in rows):
        # Only plain SHA-256, no seal, no keyed head: a chain from before keys nobody sealed yet — or
        # one recomputed by someone without the key. Neither proves anything.
        unsealed, report.legacy_until = True, rows[-1].seq
        report.problems.append(ChainProblem(None, (
            f"审计链没有用 AUDIT_KEY 封存：{len(rows)} 条记录只有普通 SHA-256 哈希，任何能写数据库的人都能重算。"
            "若此库刚从旧版本升级，启动一次服务即可封存；若早已封存过，说明整条链被人不带密钥重写了")))
    problems = report.problems
    keyed_failures, head_failed = 0, False
    expected_prev, expected_seq = GENESIS_HASH, 1
    for row in rows:
        if row.seq != expected_seq:
            problems.append(ChainProblem(expected_seq, f"缺少序号 {expected_seq}–{row.seq - 1} 的审计记录（被删除？）"))
        if row.prev_hash != expected_prev:
            problems.append(ChainProblem(row.seq, "前序哈希不匹配（记录被删除、插入或调换了顺序）"))
        if row.seq <= report.legacy_until:
            if row.legacy_hash() != row.hash:
                problems.append(ChainProblem(row.seq, "内容哈希不匹配（记录被修改）"))
        elif row.keyed_hash(key) != row.hash:
            keyed_failures += 1
            problems.append(ChainProblem(row.seq, "内容哈希不匹配（记录被修改，或被不带密钥/用错误密钥重算）"))
        elif row is seal and row.payload != seal_payload(row.seq - 1, row.prev_hash):
            problems.append(ChainProblem(row.seq, "封存记录的内容与它的位置不符"))
        expected_prev, expected_seq = row.hash, row.seq + 1
    last_seq, last_hash = (rows[-1].seq, rows[-1].hash) if rows else (0, GENESIS_HASH)
    if head is None:
        if rows:
            problems.append(ChainProblem(None, "链头记录缺失（被删除？）"))
    elif head.seq != last_seq or head.hash != last_hash:
        problems.append(ChainProblem(
            last_seq, f"链尾与记录的链头不一致（链头序号 {head.seq}，实际 {last_seq}）：末尾记录被删除？"))
    elif not unsealed and (head.mac is None or not hmac.compare_digest(head.mac, head_mac(key, head.seq, head.hash))):
        head_failed = True
        problems.append(ChainProblem(None, "链头的密钥签名不符：链头被改动（删除末尾记录后回退？）"))
    if head_failed and keyed_failures and keyed_failures == report.count - report.legacy_until:
        # Every keyed value fails, the first event after genesis or the seal too: more likely the wrong
        # key than tampering with each of them.
        problems.append(ChainProblem(None, "所有带密钥的哈希都不符：AUDIT_KEY 与写入这条链时的密钥不同？"))
    return report


def check_anchor(rows: Iterable[ChainRow], anchor: Anchor) -> list[ChainProblem]:
    """The chain must still hold the anchored event, unchanged."""
    if anchor.seq == 0:
        return []
    row = next((r for r in rows if r.seq == anchor.seq), None)
    if row is None:
        return [ChainProblem(anchor.seq, f"链已不再到达锚点：序号 {anchor.seq} 的记录不存在（链被截断、回滚或清空）")]
    if row.hash != anchor.hash:
        return [ChainProblem(anchor.seq, f"序号 {anchor.seq} 的哈希与锚点不同（记录被改写，或整条链被重写）")]
    return []


def check_ticket_creations(ticket_numbers: Iterable[str], rows: Iterable[ChainRow]) -> list[ChainProblem]:
    """Every ticket was created through the service, which audits `ticket_created` in the same
    transaction: a ticket without one was inserted behind its back, or its events were removed."""
    created = {r.ticket_number for r in rows if r.kind == TICKET_CREATED}
    return [ChainProblem(None, f"工单 {number} 没有创建事件 {TICKET_CREATED}（审计记录被删除，或工单被直接写入数据库）")
            for number in sorted(set(ticket_numbers) - created)]
