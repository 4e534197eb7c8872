"""Field mappings of the work-order hub (issue 23, docs/api.md#field-mappings).

A connected system (an API client) speaks its own field names and values. Its mapping is a small
YAML (or JSON, which is YAML) document:

    fields:            # their field: our field
      委托方名称: customer.name
      MES单号: external_ref
      故障代码: category
    values:            # our field: {their value: our value}
      category: {E01: 空调, E02: 冷库}
    states:            # their status name: our state (or a list of our states)
      待派工: pending_dispatch
      处理中: [dispatched, accepted, in_progress]
      已完工: closed
    ignore: [备注]     # their fields dropped on the way in (otherwise an unknown field is a 422)

It is applied both ways: to the body of `POST /api/v1/tickets` and the `name` of a transition
(their status name → the step that leads to our state) on the way in, and to the webhook bodies sent
to that system on the way out (`install_body_mapper`; the three golden fields stay at the top level
as ours). A mapping is versioned like every other configuration (`save_config`, one kind per
client), checked whole before it is saved: every problem is named with its line.
"""

from __future__ import annotations

import difflib
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from core.errors import InvalidInput
from core.hub.webhook_events import install_body_mapper
from core.model import TicketStatus
from core.repository import UnitOfWork
from core.service import Context

KIND_PREFIX = "fieldmap:"  # config_versions.kind holds 32 characters; client names up to 48
MAX_SOURCE = 64 * 1024
CACHE_S = 5.0  # another process sees a new version within this (this one at once)
PRIORITIES = ("紧急", "常规", "咨询")
IMPACTS = ("单用户", "部门", "全厂")
SECTIONS = ("fields", "values", "states", "ignore")

# Our fields a system may name, and where each is in our webhook body's `ticket` (None: in only).
OUR_FIELDS: dict[str, str | None] = {
    "description": None, "customer.phone": None, "customer.name": None, "customer.external_key": None,
    "customer.id": "customer_key", "external_ref": "external_refs", "store": "store_id", "asset": "asset_id",
    "category": "category", "priority": "priority", "impact": "impact",
    "number": "number", "status": "status", "assignee_id": "assignee_id", "created_at": "created_at",
    "updated_at": "updated_at", "closed_at": "closed_at",
}
INBOUND_ONLY = frozenset(k for k, v in OUR_FIELDS.items() if v is None)
OUTBOUND_ONLY = frozenset({"number", "status", "assignee_id", "created_at", "updated_at", "closed_at"})
VALUE_FIELDS = ("category", "priority", "impact")


class MappingRejected(InvalidInput):
    """A mapping document that cannot be saved; `problems` are (line, message), line 0: the whole."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = sorted(problems)
        text = "；".join(f"第 {line} 行：{message}" if line else message for line, message in self.problems)
        super().__init__(f"映射没有保存：{text}", problems=[{"line": line, "message": message}
                                                           for line, message in self.problems])


@dataclass(frozen=True, slots=True)
class FieldMapping:
    client: str
    fields: dict[str, str] = field(default_factory=dict)  # theirs → ours
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # ours → {their value: our value}
    states: dict[str, tuple[str, ...]] = field(default_factory=dict)  # their status → our states
    ignore: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {"fields": dict(self.fields), "values": {k: dict(v) for k, v in self.values.items()},
                "states": {k: list(v) for k, v in self.states.items()}, "ignore": sorted(self.ignore)}

    @classmethod
    def from_dict(cls, client: str, data: dict[str, Any]) -> FieldMapping:
        return cls(client, dict(data.get("fields", {})), {k: dict(v) for k, v in data.get("values", {}).items()},
                   {k: tuple(v) for k, v in data.get("states", {}).items()}, frozenset(data.get("ignore", [])))

    # --- their words → ours ---
    def theirs_to_ours(self, data: dict[str, Any]) -> dict[str, Any]:
        """A ticket-create body in their names → ours (dotted fields nested); ignored fields dropped,
        values translated; anything unmapped stays as it is (the request model names it if unknown).
        Raises InvalidInput when one of our fields is given twice."""
        out: dict[str, Any] = {}
        given: dict[str, str] = {}
        for key, value in data.items():
            if key in self.ignore:
                continue
            ours = self.fields.get(key, key)
            if ours in OUTBOUND_ONLY and key in self.fields:
                continue  # e.g. their own copy of our number: nothing to set on the way in
            if ours in given:
                raise InvalidInput(f"字段「{key}」与「{given[ours]}」都对应 {ours}，只能给一个。", field=key)
            given[ours] = key
            table = self.values.get(ours, {})
            if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) in table:
                value = table[str(value)]
            head, _, tail = ours.partition(".")
            if tail and key in self.fields:
                nested = out.setdefault(head, {})
                if not isinstance(nested, dict):
                    raise InvalidInput(f"字段「{key}」对应 {ours}，但 {head} 不是对象。", field=key)
                if tail in nested:
                    raise InvalidInput(f"字段「{key}」与 {ours} 重复。", field=key)
                nested[tail] = value
            elif head in out and isinstance(out[head], dict) and isinstance(value, dict):
                for sub, item in value.items():
                    if sub in out[head]:
                        raise InvalidInput(f"字段 {head}.{sub} 给了两次。", field=f"{head}.{sub}")
                    out[head][sub] = item
            else:
                out[ours] = value
        return out

    def state_of(self, name: str) -> TicketStatus | None:
        """Our state of their status name (the first listed), None when the mapping does not name it."""
        states = self.states.get(name)
        return TicketStatus(states[0]) if states else None

    # --- ours → their words ---
    def their_state(self, ours: str) -> str:
        for theirs, states in self.states.items():
            if ours in states:
                return theirs
        return ours

    def their_value(self, ours_field: str, value: Any) -> Any:
        for theirs, ours in self.values.get(ours_field, {}).items():
            if ours == value:
                return theirs  # several of theirs for one of ours: the first listed goes out
        return value

    def ours_to_theirs(self, body: dict[str, Any]) -> dict[str, Any]:
        """Our webhook body → theirs: in `ticket`, our fields renamed and their values translated,
        their own id of the ticket under their name; everything else as it is."""
        ticket = body.get("ticket")
        if not isinstance(ticket, dict):
            return body
        renamed: dict[str, Any] = {}
        by_ours = {ours: theirs for theirs, ours in self.fields.items()}
        refs = ticket.get("external_refs") or {}
        for key, value in ticket.items():
            ours = next((o for o, where in OUR_FIELDS.items() if where == key and o in by_ours), None)
            if ours is None or ours == "external_ref":
                renamed[key] = value
                continue
            if ours == "status":
                value = self.their_state(value)
            elif ours in VALUE_FIELDS:
                value = self.their_value(ours, value)
            renamed[by_ours[ours]] = value
        if "external_ref" in by_ours and isinstance(refs, dict) and self.client in refs:
            renamed[by_ours["external_ref"]] = refs[self.client]
        if "status" not in by_ours and self.states:
            renamed["status"] = self.their_state(str(ticket.get("status")))  # their word, under our name
        return {**body, "ticket": renamed}


# --- parsing with line numbers ---
def _lines(node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    """The node as plain data; `lines[path]` is the line (1-based) of every mapping key and list item."""
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            sub = f"{path}.{key}" if path else str(key)
            if sub in lines:
                lines[sub + "#again"] = key_node.start_mark.line + 1
            else:
                lines[sub] = key_node.start_mark.line + 1
            out[key] = _lines(value_node, sub, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[f"{path}[{i}]"] = item.start_mark.line + 1
            items.append(_lines(item, f"{path}[{i}]", lines))
        return items
    return yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None


def parse(client: str, text: str, *, categories: Iterable[str]) -> FieldMapping:
    """Check a mapping document whole; MappingRejected naming the line of every problem."""
    if len(text.encode()) > MAX_SOURCE:
        raise MappingRejected([(0, f"映射文件超过 {MAX_SOURCE // 1024} KB。")])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise MappingRejected([(mark.line + 1 if mark else 0,
                                f"不是合法的 YAML/JSON：{getattr(error, 'problem', None) or error}")]) from None
    lines: dict[str, int] = {}
    data = _lines(node, "", lines) if node is not None else {}
    if not isinstance(data, dict):
        raise MappingRejected([(1, "映射应是一个对象（fields / values / states / ignore）。")])
    problems: list[tuple[int, str]] = []

    def at(path: str) -> int:
        return lines.get(path, 0)

    for key in data:
        if key not in SECTIONS:
            problems.append((at(str(key)), f"不认识的部分「{key}」（可用：{', '.join(SECTIONS)}）。"))
    for key, line in lines.items():
        if key.endswith("#again"):
            problems.append((line, f"「{key.removesuffix('#again')}」写了两次。"))

    def section(name: str, kind: type) -> Any:
        value = data.get(name)
        if value is None:
            return kind()
        if not isinstance(value, kind):
            problems.append((at(name), f"{name} 应是{'对象' if kind is dict else '列表'}。"))
            return kind()
        return value

    fields_in, values_in, states_in, ignore_in = (section("fields", dict), section("values", dict),
                                                  section("states", dict), section("ignore", list))
    fields: dict[str, str] = {}
    owner: dict[str, str] = {}
    for theirs, ours in fields_in.items():
        line = at(f"fields.{theirs}")
        if not isinstance(ours, str) or ours not in OUR_FIELDS:
            problems.append((line, f"「{theirs}」对应的字段「{ours}」不存在（可用：{', '.join(OUR_FIELDS)}）。"))
            continue
        if ours in owner:
            problems.append((line, f"「{theirs}」和「{owner[ours]}」（第 {at(f'fields.{owner[ours]}')} 行）"
                                   f"都映射到 {ours}：两个字段不能映射到同一个字段。"))
            continue
        owner[ours] = str(theirs)
        fields[str(theirs)] = ours
    known_categories = set(categories)
    allowed = {"category": known_categories, "priority": set(PRIORITIES), "impact": set(IMPACTS)}
    values: dict[str, dict[str, str]] = {}
    for ours, table in values_in.items():
        line = at(f"values.{ours}")
        if ours not in VALUE_FIELDS:
            problems.append((line, f"只有 {', '.join(VALUE_FIELDS)} 的取值可以映射，「{ours}」不行。"))
            continue
        if not isinstance(table, dict):
            problems.append((line, f"values.{ours} 应是「对方取值: 我方取值」的对象。"))
            continue
        values[ours] = {}
        for theirs, value in table.items():
            if value not in allowed[ours]:
                known = "、".join(sorted(allowed[ours])) or "（还没有分类）"
                problems.append((at(f"values.{ours}.{theirs}"), f"「{theirs}」对应的{_NAMES[ours]}「{value}」"
                                                                 f"不存在（可用：{known}）。"))
                continue
            values[ours][str(theirs)] = str(value)
    known_states = {s.value for s in TicketStatus}
    states: dict[str, tuple[str, ...]] = {}
    said: dict[str, str] = {}
    for theirs, ours in states_in.items():
        line = at(f"states.{theirs}")
        listed = ours if isinstance(ours, list) else [ours]
        if not listed:
            problems.append((line, f"状态「{theirs}」没有对应我方状态。"))
            continue
        good: list[str] = []
        for i, state in enumerate(listed):
            item_line = at(f"states.{theirs}[{i}]") or line
            if state not in known_states:
                problems.append((item_line, f"状态「{theirs}」对应的「{state}」不是我方状态"
                                            f"（可用：{', '.join(s.value for s in TicketStatus)}）。"))
            elif state in said:
                problems.append((item_line, f"我方状态 {state} 同时对应「{said[state]}」和「{theirs}」："
                                            "推送时无法确定用哪个。"))
            else:
                said[state] = str(theirs)
                good.append(str(state))
        if good:
            states[str(theirs)] = tuple(good)
    ignore: set[str] = set()
    for i, name in enumerate(ignore_in):
        if not isinstance(name, str) or not name:
            problems.append((at(f"ignore[{i}]"), "ignore 的每一项应是字段名。"))
        elif name in fields:
            problems.append((at(f"ignore[{i}]"), f"「{name}」已在 fields 中映射，不能同时忽略。"))
        else:
            ignore.add(name)
    if problems:
        raise MappingRejected(problems)
    return FieldMapping(client, fields, values, states, frozenset(ignore))


_NAMES = {"category": "分类", "priority": "优先级", "impact": "影响范围"}


def dry_run(mapping: FieldMapping, sample: dict[str, Any]) -> dict[str, Any]:
    """What the mapping makes of a sample: their ticket body → ours, and, when the sample is one
    of our webhook bodies (it has `ticket`), ours → theirs."""
    if isinstance(sample.get("ticket"), dict):
        return {"outbound": mapping.ours_to_theirs(sample)}
    inbound = mapping.theirs_to_ours(sample)
    unknown = sorted(k for k in inbound if k not in _CREATE_FIELDS)
    return {"inbound": inbound, "unknown_fields": unknown}


_CREATE_FIELDS = {"description", "customer", "external_ref", "store", "asset", "priority", "impact", "category"}


# --- versions (config_versions, one kind per client) ---
def kind_of(client: str) -> str:
    """The config kind of a client's mapping: a hash, as names are longer than the kind column."""
    return KIND_PREFIX + hashlib.sha256(client.encode()).hexdigest()[:32 - len(KIND_PREFIX)]


@dataclass(frozen=True, slots=True)
class StoredMapping:
    version: int
    source: str
    mapping: FieldMapping


def _stored(client: str, version: int, payload: dict[str, Any]) -> StoredMapping:
    return StoredMapping(version, str(payload.get("source", "")), FieldMapping.from_dict(client, payload["mapping"]))


async def current(uow: UnitOfWork, client: str) -> StoredMapping | None:
    latest = await uow.latest_config(kind_of(client))
    if latest is None or not latest[1].get("mapping"):
        return None  # never set, or removed (an empty version)
    return _stored(client, *latest)


async def version_of(uow: UnitOfWork, client: str, version: int) -> StoredMapping | None:
    payload = await uow.config_version(kind_of(client), version)
    return _stored(client, version, payload) if payload is not None and payload.get("mapping") else None


async def history(uow: UnitOfWork, client: str, limit: int = 20) -> list[dict[str, Any]]:
    return await uow.config_history(kind_of(client), limit=limit)


def diff(before: str, after: str, *, before_name: str = "current", after_name: str = "new") -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        before_name, after_name))


async def save(uow: UnitOfWork, client: str, text: str, *, categories: Iterable[str], actor_id: str, at: Any,
               note: str = "") -> tuple[int, FieldMapping]:
    """Check and store a new version (the caller commits); audited. Raises MappingRejected."""
    mapping = parse(client, text, categories=categories)
    kind = kind_of(client)
    latest = await uow.latest_config(kind)
    version = await uow.save_config(kind, {"client": client, "source": text, "mapping": mapping.to_dict()},
                                    actor_id=actor_id, note=note or "set",
                                    at=at, based_on=latest[0] if latest else None)
    await uow.append_audit(kind="field_mapping_saved", actor_id=actor_id, at=at, ticket_number=None,
                           payload={"client": client, "version": version, "note": note or "set"})
    forget(client)
    return version, mapping


async def rollback(uow: UnitOfWork, client: str, version: int, *, categories: Iterable[str], actor_id: str,
                   at: Any) -> tuple[int, FieldMapping]:
    """Save version `version`'s text again as the newest (checked again: a category it names may be gone)."""
    payload = await uow.config_version(kind_of(client), version)
    if payload is None:
        raise InvalidInput(f"{client} 没有第 {version} 版映射。", field="version")
    return await save(uow, client, str(payload.get("source", "")), categories=categories, actor_id=actor_id,
                      at=at, note=f"rollback to {version}")


# --- the per-process cache and the outbound half ---
_CACHE: dict[str, tuple[float, FieldMapping | None]] = {}


def forget(client: str | None = None) -> None:
    if client is None:
        _CACHE.clear()
    else:
        _CACHE.pop(client, None)


async def cached(client: str, read: Callable[[], Awaitable[StoredMapping | None]]) -> FieldMapping | None:
    """The client's mapping, read (by `read`) at most every CACHE_S per process: requests and events
    are many, mapping changes rare; a save in this process takes effect at once."""
    now = time.monotonic()
    hit = _CACHE.get(client)
    if hit is not None and now - hit[0] < CACHE_S:
        return hit[1]
    stored = await read()
    found = stored.mapping if stored is not None else None
    if len(_CACHE) > 1000:
        _CACHE.clear()
    _CACHE[client] = (now, found)
    return found


async def _outbound(ctx: Context, client: str, body: dict[str, Any]) -> dict[str, Any]:
    mapping = await cached(client, lambda: current(ctx.uow, client))
    return body if mapping is None else mapping.ours_to_theirs(body)


def install() -> None:
    """Make the mappings the webhook body mapper (done at import; again by whoever replaced it)."""
    install_body_mapper(_outbound)


install()
