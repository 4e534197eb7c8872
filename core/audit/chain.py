"""Hash chaining of audit events: an edited, inserted or deleted row breaks the chain."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def event_hash(
    *, prev_hash: str, seq: int, kind: str, actor_id: str, at: datetime, ticket_number: str | None, payload: Any
) -> str:
    """The hash covers the sequence number so that deleting a row is detected, not only editing one."""
    material = canonical_json(
        {
            "prev": prev_hash,
            "seq": seq,
            "kind": kind,
            "actor": actor_id,
            "at": at.isoformat(),
            "ticket": ticket_number,
            "payload": payload,
        }
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


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


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int
    reason: str


def verify_chain(rows: Iterable[ChainRow], *, head_seq: int | None, head_hash: str | None) -> list[ChainProblem]:
    """Check rows (ordered by seq) link up from genesis to the recorded head."""
    problems: list[ChainProblem] = []
    expected_prev = GENESIS_HASH
    expected_seq = 1
    last_hash = GENESIS_HASH
    last_seq = 0
    for row in rows:
        if row.seq != expected_seq:
            problems.append(ChainProblem(expected_seq, f"缺少序号 {expected_seq}–{row.seq - 1} 的审计记录（被删除？）"))
        if row.prev_hash != expected_prev:
            problems.append(ChainProblem(row.seq, "前序哈希不匹配（记录被删除或插入）"))
        recomputed = event_hash(
            prev_hash=row.prev_hash,
            seq=row.seq,
            kind=row.kind,
            actor_id=row.actor_id,
            at=row.at,
            ticket_number=row.ticket_number,
            payload=row.payload,
        )
        if recomputed != row.hash:
            problems.append(ChainProblem(row.seq, "内容哈希不匹配（记录被修改）"))
        expected_prev = row.hash
        expected_seq = row.seq + 1
        last_hash, last_seq = row.hash, row.seq
    if head_seq is not None and (head_seq != last_seq or head_hash != last_hash):
        problems.append(
            ChainProblem(last_seq, f"链尾与记录的链头不一致（链头序号 {head_seq}，实际 {last_seq}）：末尾记录被删除？")
        )
    return problems
