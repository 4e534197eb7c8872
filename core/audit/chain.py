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
from collections.abc import Iterable, Iterator, Sequence
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

    __slots__ = ("_keyed", "_secret")

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the audit key is empty")
        self._secret = secret
        # The key set up once and copied per message: `hmac.digest` sets it up for every call (an
        # OpenSSL digest fetch and two key blocks, a fifth of the work of a fault report's five MACs).
        self._keyed = hmac.new(secret, digestmod="sha256")

    def __reduce__(self) -> tuple[type[AuditKey], tuple[bytes]]:
        return AuditKey, (self._secret,)  # for a worker process: the keyed state is made again there

    def mac(self, material: str) -> str:
        return self.mac_bytes(material.encode("utf-8"))

    def mac_bytes(self, material: bytes) -> str:
        keyed = self._keyed.copy()
        keyed.update(material)
        return keyed.hexdigest()

    def __repr__(self) -> str:
        return "AuditKey(***)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuditKey) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._secret).digest())


# json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str), the encoder
# built once: json.dumps builds one per call with these options, a third of the cost of a short event.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


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


_KEYED_MISMATCH = "内容哈希不匹配（记录被修改，或被不带密钥/用错误密钥重算）"
MAX_LISTED = 1000  # problems about single events kept in full; beyond, only counted (memory stays flat)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a verification got to with nothing wrong so far: events 1..seq link up to `hash`.

    Written by `ticketbot audit verify --resume FILE` every few batches and read back by the next run
    with the same FILE, which continues after `seq`. It carries a MAC under the audit key, so a
    checkpoint nobody with the key wrote (one that would skip tampered events) is refused; and the
    run that resumes checks that the event at `seq` still has `hash`.
    """

    seq: int
    hash: str
    count: int
    legacy_until: int
    sealed_by: int | None
    at: datetime | None

    def _material(self) -> str:
        return canonical_json({"checkpoint": self.seq, "hash": self.hash, "count": self.count,
                               "legacy_until": self.legacy_until, "sealed_by": self.sealed_by,
                               "at": self.at.isoformat() if self.at else None})

    def to_json(self, key: AuditKey) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash, "count": self.count,
                           "legacy_until": self.legacy_until, "sealed_by": self.sealed_by,
                           "at": self.at.isoformat() if self.at else None, "mac": key.mac(self._material())})

    @classmethod
    def from_json(cls, text: str, key: AuditKey) -> Checkpoint:
        """ValueError when it is not a checkpoint, or not one written under this key."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            at = data["at"]
            checkpoint = cls(int(data["seq"]), str(data["hash"]), int(data["count"]), int(data["legacy_until"]),
                             None if data["sealed_by"] is None else int(data["sealed_by"]),
                             datetime.fromisoformat(at) if at else None)
            mac = str(data["mac"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a checkpoint ({type(error).__name__}: {error})") from None
        if not hmac.compare_digest(mac, key.mac(checkpoint._material())):
            raise ValueError("its MAC does not match under this AUDIT_KEY (written with another key, or edited)")
        return checkpoint


class ChainVerifier:
    """`verify_chain` one batch at a time: memory does not grow with the chain.

    `seal_seq`: the seq of the first seal event (`SEAL_KIND`) anywhere in the chain, or None; the
    caller finds it first (one indexed lookup), since events before it are checked as unkeyed.
    Without a seal and without a keyed head, whether the chain is an unsealed one from before keys
    is only known at its end, so both hashes are computed until then.
    """

    def __init__(self, *, key: AuditKey, head: ChainHead | None, seal_seq: int | None,
                 start: Checkpoint | None = None) -> None:
        self.key, self.head, self.seal_seq = key, head, seal_seq
        self.report = ChainReport()
        self.expected_prev, self.expected_seq = GENESIS_HASH, 1
        self.last_seq, self.last_hash, self.last_at = 0, GENESIS_HASH, None
        if seal_seq is not None:
            self.report.legacy_until, self.report.sealed_by = seal_seq - 1, seal_seq
        self.maybe_unsealed = seal_seq is None and (head is None or head.mac is None)
        self.all_legacy = True
        self.keyed_failures = 0
        self.unlisted = 0
        # In the maybe-unsealed case the keyed failures are kept apart: dropped if it was unsealed.
        self._pending: list[tuple[ChainProblem, bool]] = []
        if start is not None:
            self.report.count = start.count
            self.expected_prev, self.expected_seq = start.hash, start.seq + 1
            self.last_seq, self.last_hash, self.last_at = start.seq, start.hash, start.at

    def _problem(self, problem: ChainProblem, keyed_failure: bool = False) -> None:
        if len(self._pending) >= MAX_LISTED:
            self.unlisted += 1
            return
        self._pending.append((problem, keyed_failure))

    def feed(self, rows: Iterable[ChainRow]) -> None:
        """The next rows, in seq order."""
        last: ChainRow | None = None

        def entries() -> Iterator[tuple[int, str, str, ChainRow | None]]:
            nonlocal last
            for row in rows:
                last = row
                yield row.seq, row.prev_hash, row.hash, row

        self.feed_links(entries())
        if last is not None:
            self.report.last = last
            self.last_at = last.at

    def needs_row(self, seq: int) -> bool:
        """Whether the event at `seq` must be given as a whole row to `feed_links` (it is checked
        as unkeyed, or is the seal), rather than as a keyed hash the caller already found matching."""
        return self.maybe_unsealed or seq <= self.report.legacy_until or seq == self.seal_seq

    def feed_links(self, entries: Iterable[tuple[int, str, str, ChainRow | None]], last: ChainRow | None = None
                   ) -> None:
        """The next events as (seq, prev_hash, hash, row): `row` None when the caller already found
        the keyed hash of this event matching (only where `needs_row` is false; see
        storage/audit_verify.py, which checks with a cheaper encoding first); `last`: the last one."""
        key, legacy_until, seal_seq = self.key, self.report.legacy_until, self.seal_seq
        expected_prev, expected_seq = self.expected_prev, self.expected_seq
        count = 0
        for seq, prev_hash, hash_, row in entries:
            count += 1
            if seq != expected_seq:
                self._problem(ChainProblem(expected_seq, f"缺少序号 {expected_seq}–{seq - 1} 的审计记录（被删除？）"))
            if prev_hash != expected_prev:
                self._problem(ChainProblem(seq, "前序哈希不匹配（记录被删除、插入或调换了顺序）"))
            if row is None:
                pass
            elif self.maybe_unsealed:
                if self.all_legacy and row.legacy_hash() != hash_:
                    self.all_legacy = False
                if row.keyed_hash(key) != hash_:
                    self.keyed_failures += 1
                    self._problem(ChainProblem(seq, _KEYED_MISMATCH), True)
            elif seq <= legacy_until:
                if row.legacy_hash() != hash_:
                    self._problem(ChainProblem(seq, "内容哈希不匹配（记录被修改）"))
            elif row.keyed_hash(key) != hash_:
                self.keyed_failures += 1
                self._problem(ChainProblem(seq, _KEYED_MISMATCH))
            elif seq == seal_seq and row.payload != seal_payload(seq - 1, prev_hash):
                self._problem(ChainProblem(seq, "封存记录的内容与它的位置不符"))
            expected_prev, expected_seq = hash_, seq + 1
        self.expected_prev, self.expected_seq = expected_prev, expected_seq
        self.report.count += count
        if count:
            self.last_seq, self.last_hash = expected_seq - 1, expected_prev
        if last is not None:
            self.report.last, self.last_at = last, last.at

    @property
    def clean(self) -> bool:
        """Nothing found so far, and nothing left undecided (a checkpoint may be written)."""
        return not self._pending and not self.unlisted and not self.maybe_unsealed

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.last_seq, self.last_hash, self.report.count, self.report.legacy_until,
                          self.report.sealed_by, self.last_at)

    def finish(self) -> ChainReport:
        report, head = self.report, self.head
        unsealed = self.maybe_unsealed and report.count > 0 and self.all_legacy
        problems = report.problems
        if unsealed:
            # Only plain SHA-256, no seal, no keyed head: a chain from before keys nobody sealed yet — or
            # one recomputed by someone without the key. Neither proves anything.
            report.legacy_until = self.last_seq
            problems.append(ChainProblem(None, (
                f"审计链没有用 AUDIT_KEY 封存：{report.count} 条记录只有普通 SHA-256 哈希，任何能写数据库的人都能重算。"
                "若此库刚从旧版本升级，启动一次服务即可封存；若早已封存过，说明整条链被人不带密钥重写了")))
            keyed_failures = 0
        else:
            keyed_failures = self.keyed_failures
        problems.extend(p for p, keyed in self._pending if not (unsealed and keyed))
        head_failed = False
        last_seq, last_hash = self.last_seq, self.last_hash
        if head is None:
            if report.count:
                problems.append(ChainProblem(None, "链头记录缺失（被删除？）"))
        elif head.seq != last_seq or head.hash != last_hash:
            problems.append(ChainProblem(
                last_seq, f"链尾与记录的链头不一致（链头序号 {head.seq}，实际 {last_seq}）：末尾记录被删除？"))
        elif not unsealed and (head.mac is None or not hmac.compare_digest(head.mac,
                                                                           head_mac(self.key, head.seq, head.hash))):
            head_failed = True
            problems.append(ChainProblem(None, "链头的密钥签名不符：链头被改动（删除末尾记录后回退？）"))
        if head_failed and keyed_failures and keyed_failures == report.count - report.legacy_until:
            # Every keyed value fails, the first event after genesis or the seal too: more likely the wrong
            # key than tampering with each of them.
            problems.append(ChainProblem(None, "所有带密钥的哈希都不符：AUDIT_KEY 与写入这条链时的密钥不同？"))
        if self.unlisted:
            problems.append(ChainProblem(None, f"另有 {self.unlisted} 处单条记录的问题未逐条列出"))
        return report


def verify_chain(rows: Sequence[ChainRow], *, key: AuditKey, head: ChainHead | None) -> ChainReport:
    """Check rows (ordered by seq) link up from genesis to the recorded head, under `key`."""
    seal = _seal_of(rows)
    verifier = ChainVerifier(key=key, head=head, seal_seq=seal.seq if seal is not None else None)
    verifier.feed(rows)
    return verifier.finish()


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
