"""JSON columns are stored compact (storage.database.compact_json, orjson) and read back as the
standard library reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.audit.chain import canonical_json
from storage.database import compact_json, parse_json

SAMPLES: list[Any] = [
    {"status": "pending_dispatch", "category": "机械类", "keywords": ["异响"], "score": 0.85, "n": 3, "none": None},
    {"card": {"facts": [["分类", "机械类"]], "urgent": True}, "text": "第一行\n第二行 \"引号\" \\ 反斜杠 😀"},
    {"tiny": 1e-7, "huge": 1e16, "neg": -0.0, "big": 2**53 + 1, 7: "an int key"},
    [],
    {},
]


@pytest.mark.parametrize("value", SAMPLES)
def test_stored_json_is_the_standard_librarys_compact_json(value: Any) -> None:
    standard = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert json.loads(compact_json(value)) == json.loads(standard)
    assert parse_json(compact_json(value)) == json.loads(standard)
    assert "\\u" not in compact_json(value)  # Chinese is stored as itself


def test_the_audit_hash_keeps_its_own_encoding() -> None:
    """canonical_json is the standard library's (sorted keys, default=str): changing it would make
    every chain stored so far fail `ticketbot audit verify`."""
    payload = {"b": 1e-7, "a": "机械类"}
    assert canonical_json(payload) == '{"a":"机械类","b":1e-07}'
