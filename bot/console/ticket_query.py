"""The console's ticket filter: query parameters → a checked TicketFilter → one SELECT.

Shared by the queue page (bot/console/queues.py) and the exports (bot/console/exports.py), so a list and
its export always hold the same tickets. Parameter names are a contract (`store`, `status`, `category`,
`from`, `to`); the others are `priority`, `sla`, `assignee`, `q`, `sort`, `page`, `per`.

  * `store`, `category`, `assignee`: one value or several, comma-separated. `assignee=none`: unassigned.
  * `status`: a status value (`pending_dispatch`) or its Chinese label (待派单), comma-separated; `open`
    (or 未结) stands for every open state.
  * `priority`: 紧急 / 常规 / 咨询 or an English alias (urgent / normal / consult), comma-separated.
  * `sla`: `breached` (a running clock is past its deadline), `at_risk` (not breached, a running clock's
    deadline is within the reminder lead), `ok` (neither: includes closed tickets). Deadlines from the
    columns response_due / resolution_due; running clocks: the response clock until a technician accepts
    (待分诊 / 待派单 / 已派单), the resolution clock in every open state except the pausing states and 待客户签字.
  * `from`, `to`: YYYY-MM-DD, days in the tenant's zone, inclusive, on `created_at` (indexed).
  * `q`: what a person types into one search box. A ticket number finds that ticket (unique index); a
    phone number (digits and phone punctuation only) the tickets of the customers with that phone
    (`customer_phones` and `people.phone`, both indexed); anything else is looked for, case-insensitively,
    in the subject (asset), the description and the customers' names (a scan: combine it with a store or
    a date range on big databases).
  * `sort`: a whitelisted column, `-` in front for descending (default `-created_at`); the number breaks
    ties so that pages never overlap.
  * `page` (from 1), `per` (1–MAX_PER, default DEFAULT_PER).
Nonsense raises FilterError naming the field (the routes answer 400 with its message).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, case, false, func, or_, select
from sqlmodel import col

from core.errors import InvalidInput
from core.masterdata.identifiers import normalise_phone
from core.model import STATUS_LABELS, TicketStatus
from core.settings import DEFAULT_PAUSE_STATES
from core.sla.matrix import Priority
from core.sla.tracking import RESOLVED_STATES, RESPONDED_STATES
from storage.tables import CustomerPhoneRow, PersonRow, TicketRow

DEFAULT_PER = 50
MAX_PER = 200
MAX_PAGE = 10_000  # deeper than anyone pages: narrow the filter instead (OFFSET gets slow)
MAX_VALUES = 50  # values in one comma-separated parameter
MAX_Q = 100
DEFAULT_SORT = "-created_at"
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")

SLA_STATES = ("at_risk", "breached", "ok")
SLA_LABELS = {"at_risk": "即将超时", "breached": "已超时", "ok": "正常"}
OPEN_WORDS = frozenset({"open", "未结", "未结案"})

FIELD_LABELS = {
    "store": "门店", "status": "状态", "category": "类别", "priority": "优先级", "sla": "SLA 状态",
    "assignee": "处理人", "from": "开始日期", "to": "结束日期", "q": "搜索", "sort": "排序", "page": "页码",
    "per": "每页条数",
}

# Priority in urgency order, for sorting (a CASE, since the stored values are Chinese words).
_PRIORITY_RANK = {Priority.URGENT.value: 0, Priority.NORMAL.value: 1, Priority.CONSULT.value: 2}
_OPEN_STATUSES = tuple(s for s in TicketStatus if s.is_open)
_STATUS_BY_LABEL = {label: status for status, label in STATUS_LABELS.items()}
_KEY = re.compile(r"^[\w.:@\-]{1,64}$")  # store ids, categories, person ids: no wildcards, no spaces
_PHONE_LIKE = re.compile(r"[+\d\s\-()（）]{7,24}")
_TICKET_NUMBER = re.compile(r"^[A-Za-z0-9]{0,16}-\d{8}-\d{1,8}$")  # GD-20261206-0001 (core/intake/tickets.py)


class FilterError(ValueError):
    """A query parameter with a value that means nothing; `message` is Chinese and names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class TicketFilter:
    stores: tuple[str, ...] = ()
    statuses: tuple[TicketStatus, ...] = ()
    categories: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    sla: str | None = None
    assignees: tuple[str, ...] = ()  # "" in it: unassigned
    from_: date | None = None
    to: date | None = None
    q: str = ""
    sort: str = DEFAULT_SORT
    page: int = 1
    per: int = DEFAULT_PER

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> TicketFilter:
        """From request query parameters (unknown ones are ignored: the page adds its own)."""
        from_ = _date(query, "from")
        to = _date(query, "to")
        if from_ is not None and to is not None and from_ > to:
            raise FilterError("to", f"{FIELD_LABELS['to']}（to）早于{FIELD_LABELS['from']}（from）。")
        q = " ".join(_text(query, "q").split())
        if len(q) > MAX_Q:
            raise FilterError("q", f"{FIELD_LABELS['q']}（q）最多 {MAX_Q} 个字。")
        sla = _text(query, "sla") or None
        if sla is not None and sla not in SLA_STATES:
            raise FilterError("sla", f"{FIELD_LABELS['sla']}（sla）只能是 {' / '.join(SLA_STATES)}，收到「{sla}」。")
        sort = _text(query, "sort") or DEFAULT_SORT
        if sort.removeprefix("-") not in SORT_COLUMNS:
            raise FilterError("sort", f"{FIELD_LABELS['sort']}（sort）只能按 {' / '.join(SORT_COLUMNS)}，"
                                      f"收到「{sort}」。")
        return cls(
            stores=_keys(query, "store"),
            statuses=_statuses(query),
            categories=_keys(query, "category"),
            priorities=_priorities(query),
            sla=sla,
            assignees=tuple("" if a.lower() == "none" else a for a in _keys(query, "assignee", extra={"none"})),
            from_=from_,
            to=to,
            q=q,
            sort=sort,
            page=_int(query, "page", 1, 1, MAX_PAGE),
            per=_int(query, "per", DEFAULT_PER, 1, MAX_PER),
        )

    def stores_outside(self, store_ids: frozenset[str] | None) -> frozenset[str]:
        """Stores asked for that the person may not see (the routes answer 403 for them)."""
        return frozenset() if store_ids is None else frozenset(self.stores) - store_ids

    def to_query(self, **changes: Any) -> dict[str, str]:
        """Back to query parameters (for links: next page, another sort, the export of this list)."""
        values: dict[str, str] = {}
        if self.stores:
            values["store"] = ",".join(self.stores)
        if self.statuses:
            values["status"] = ",".join(s.value for s in self.statuses)
        if self.categories:
            values["category"] = ",".join(self.categories)
        if self.priorities:
            values["priority"] = ",".join(self.priorities)
        if self.sla:
            values["sla"] = self.sla
        if self.assignees:
            values["assignee"] = ",".join(a or "none" for a in self.assignees)
        if self.from_:
            values["from"] = self.from_.isoformat()
        if self.to:
            values["to"] = self.to.isoformat()
        if self.q:
            values["q"] = self.q
        if self.sort != DEFAULT_SORT:
            values["sort"] = self.sort
        if self.page != 1:
            values["page"] = str(self.page)
        if self.per != DEFAULT_PER:
            values["per"] = str(self.per)
        for key, value in changes.items():
            name = "from" if key == "from_" else key
            if value is None or value == "":
                values.pop(name, None)
            else:
                values[name] = str(value)
        return values


# --- parsing one parameter ---


def _text(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    return value.strip() if isinstance(value, str) else ""


def _values(query: Mapping[str, str], name: str) -> list[str]:
    raw = _text(query, name)
    values = [v.strip() for v in raw.replace("，", ",").split(",") if v.strip()]
    if len(values) > MAX_VALUES:
        raise FilterError(name, f"{FIELD_LABELS[name]}（{name}）最多 {MAX_VALUES} 个值。")
    return list(dict.fromkeys(values))


def _keys(query: Mapping[str, str], name: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    values = _values(query, name)
    for value in values:
        if value.lower() not in extra and not _KEY.match(value):
            raise FilterError(name, f"{FIELD_LABELS[name]}（{name}）的值「{value[:40]}」无效：只能是编号。")
    return tuple(values)


def _statuses(query: Mapping[str, str]) -> tuple[TicketStatus, ...]:
    found: list[TicketStatus] = []
    for value in _values(query, "status"):
        if value.lower() in OPEN_WORDS:
            found.extend(_OPEN_STATUSES)
            continue
        status = _STATUS_BY_LABEL.get(value)
        if status is None:
            try:
                status = TicketStatus(value.lower())
            except ValueError:
                options = "、".join(STATUS_LABELS.values())
                raise FilterError("status", f"{FIELD_LABELS['status']}（status）没有「{value[:40]}」，可选：{options}，"
                                            f"或 open（全部未结）。") from None
        found.append(status)
    return tuple(dict.fromkeys(found))


def _priorities(query: Mapping[str, str]) -> tuple[str, ...]:
    found: list[str] = []
    for value in _values(query, "priority"):
        try:
            found.append(Priority.parse(value).value)
        except InvalidInput:
            raise FilterError("priority", f"{FIELD_LABELS['priority']}（priority）没有「{value[:40]}」，"
                                          f"可选：{' / '.join(p.value for p in Priority)}。") from None
    return tuple(dict.fromkeys(found))


def _date(query: Mapping[str, str], name: str) -> date | None:
    value = _text(query, name)
    if not value:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError(name, f"{FIELD_LABELS[name]}（{name}）应为 YYYY-MM-DD 格式的日期，"
                                f"收到「{value[:40]}」。") from None


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _text(query, name)
    if not value:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise FilterError(name, f"{FIELD_LABELS[name]}（{name}）应为 {low}–{high} 之间的整数，收到「{value[:40]}」。")
    return int(value)


# --- SQL ---


def _priority_rank() -> ColumnElement[Any]:
    return case(_PRIORITY_RANK, value=col(TicketRow.priority), else_=len(_PRIORITY_RANK))


SORT_COLUMNS: dict[str, Any] = {
    "created_at": col(TicketRow.created_at),
    "updated_at": col(TicketRow.updated_at),
    "closed_at": col(TicketRow.closed_at),
    "response_due": col(TicketRow.response_due),
    "resolution_due": col(TicketRow.resolution_due),
    "number": col(TicketRow.number),
    "status": col(TicketRow.status),
    "priority": None,  # built per query: a CASE on the Chinese words (see _priority_rank)
    "category": col(TicketRow.category),
    "store": col(TicketRow.store_id),
    "assignee": col(TicketRow.assignee_id),
}


_NULLABLE_SORTS = frozenset({"closed_at", "response_due", "resolution_due", "category", "store", "assignee"})


@dataclass(frozen=True, slots=True)
class _Clocks:
    """The running SLA clocks as SQL conditions (see the module docstring)."""

    response_running: ColumnElement[bool]
    resolution_running: ColumnElement[bool]


def _clocks(pause_states: Iterable[TicketStatus]) -> _Clocks:
    waiting_response = [s.value for s in _OPEN_STATUSES if s not in RESPONDED_STATES and s is not TicketStatus.REOPENED]
    stopped = set(pause_states) | set(RESOLVED_STATES)
    resolving = [s.value for s in _OPEN_STATUSES if s not in stopped]
    return _Clocks(col(TicketRow.status).in_(waiting_response), col(TicketRow.status).in_(resolving))


def sla_conditions(now: datetime, reminder_lead: timedelta,
                   pause_states: Iterable[TicketStatus] = DEFAULT_PAUSE_STATES) -> dict[str, ColumnElement[bool]]:
    """`breached`, `at_risk`, `ok` as SQL conditions on tickets at `now`."""
    clocks = _clocks(pause_states)
    soon = now + reminder_lead

    def past(moment: datetime) -> ColumnElement[bool]:
        return or_(and_(clocks.response_running, col(TicketRow.response_due).is_not(None),
                        col(TicketRow.response_due) < moment),
                   and_(clocks.resolution_running, col(TicketRow.resolution_due).is_not(None),
                        col(TicketRow.resolution_due) < moment))

    breached = past(now)
    at_risk = and_(past(soon), ~breached)
    return {"breached": breached, "at_risk": at_risk, "ok": ~past(soon)}


class WithDeadlines(Protocol):
    """A ticket row, or a result row with these columns."""

    @property
    def status(self) -> str: ...
    @property
    def response_due(self) -> datetime | None: ...
    @property
    def resolution_due(self) -> datetime | None: ...


def sla_state_of(row: WithDeadlines, *, now: datetime, reminder_lead: timedelta,
                 pause_states: Iterable[TicketStatus] = DEFAULT_PAUSE_STATES) -> str:
    """The same classification in Python, for one loaded row (the page's badge, the export's column)."""
    status = TicketStatus(row.status)
    paused = set(pause_states) | set(RESOLVED_STATES)
    dues: list[datetime] = []
    if status.is_open and status not in RESPONDED_STATES and status is not TicketStatus.REOPENED \
            and row.response_due is not None:
        dues.append(row.response_due)
    if status.is_open and status not in paused and row.resolution_due is not None:
        dues.append(row.resolution_due)
    if any(due < now for due in dues):
        return "breached"
    if any(due < now + reminder_lead for due in dues):
        return "at_risk"
    return "ok"


def _day_start(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _search(q: str) -> ColumnElement[bool]:
    """A ticket number: that ticket (unique index). A phone number (only digits and phone punctuation): the
    tickets of the customers with that phone (both lookups indexed). Anything else: the text in the subject,
    the description or the customer's name (a scan, bounded by the other filters)."""
    if _TICKET_NUMBER.match(q):
        return col(TicketRow.number).in_(sorted({q, q.upper()}))
    phone = normalise_phone(q) if _PHONE_LIKE.fullmatch(q) else None
    if phone is not None:
        by_phone = select(col(CustomerPhoneRow.person_id)).where(col(CustomerPhoneRow.phone) == phone)
        by_person = select(col(PersonRow.id)).where(col(PersonRow.phone) == phone)
        return or_(col(TicketRow.customer_id).in_(by_phone), col(TicketRow.customer_id).in_(by_person))
    pattern = _like(q)
    return or_(col(TicketRow.subject).ilike(pattern, escape="\\"),
               col(TicketRow.description).ilike(pattern, escape="\\"),
               col(TicketRow.customer_id).in_(
                   select(col(PersonRow.id)).where(col(PersonRow.name).ilike(pattern, escape="\\"))))


def ticket_where(f: TicketFilter, store_ids: frozenset[str] | None, *, now: datetime, reminder_lead: timedelta,
                 tz: tzinfo = DEFAULT_ZONE,
                 pause_states: Iterable[TicketStatus] = DEFAULT_PAUSE_STATES) -> list[ColumnElement[bool]]:
    """The WHERE conditions of `f` within the person's stores (None: every store; an empty set: none)."""
    where: list[ColumnElement[bool]] = []
    if store_ids is not None:
        where.append(col(TicketRow.store_id).in_(sorted(store_ids)) if store_ids else false())
    if f.stores:
        where.append(col(TicketRow.store_id).in_(f.stores))
    if f.statuses:
        where.append(col(TicketRow.status).in_([s.value for s in f.statuses]))
    if f.categories:
        where.append(col(TicketRow.category).in_(f.categories))
    if f.priorities:
        where.append(col(TicketRow.priority).in_(f.priorities))
    if f.assignees:
        named = [a for a in f.assignees if a]
        parts: list[ColumnElement[bool]] = [col(TicketRow.assignee_id).in_(named)] if named else []
        if "" in f.assignees:
            parts.append(col(TicketRow.assignee_id).is_(None))
        where.append(or_(*parts))
    if f.from_ is not None:
        where.append(col(TicketRow.created_at) >= _day_start(f.from_, tz))
    if f.to is not None:
        where.append(col(TicketRow.created_at) < _day_start(f.to + timedelta(days=1), tz))
    if f.sla is not None:
        where.append(sla_conditions(now, reminder_lead, pause_states)[f.sla])
    if f.q:
        where.append(_search(f.q))
    return where


def sort_key(f: TicketFilter) -> ColumnElement[Any]:
    """The expression `f` sorts by (before the number that breaks ties)."""
    name = f.sort.removeprefix("-")
    column: ColumnElement[Any] = _priority_rank() if name == "priority" else SORT_COLUMNS[name]
    return column


def order_by(f: TicketFilter) -> list[Any]:
    """ORDER BY for `f.sort`, with the number as tie-breaker (stable pages). NULLs last either way: a
    ticket without a deadline is not the most urgent one."""
    name = f.sort.removeprefix("-")
    descending = f.sort.startswith("-")
    number = col(TicketRow.number)
    if name == "number":
        return [number.desc() if descending else number.asc()]
    key = sort_key(f)
    first = key.desc() if descending else key.asc()
    return [first.nulls_last() if name in _NULLABLE_SORTS else first, number.desc() if descending else number.asc()]


def after(f: TicketFilter, key: Any, number: str) -> ColumnElement[bool]:
    """Tickets after the one with sort value `key` and `number` in `f`'s order: keyset paging, for
    reading a whole list in batches of short statements (the exports) without OFFSET."""
    name = f.sort.removeprefix("-")
    descending = f.sort.startswith("-")
    num = col(TicketRow.number)
    tie = num < number if descending else num > number
    if name == "number":
        return tie
    expr = sort_key(f)
    if key is None:  # in the NULL tail
        return and_(expr.is_(None), tie)
    within = expr <= key if descending else expr >= key
    beyond = expr < key if descending else expr > key
    found = and_(within, or_(beyond, tie))  # a range on the sort column first: an index can serve it
    return or_(found, expr.is_(None)) if name in _NULLABLE_SORTS else found


def ticket_select(f: TicketFilter, store_ids: frozenset[str] | None, *, now: datetime, reminder_lead: timedelta,
                  tz: tzinfo = DEFAULT_ZONE, pause_states: Iterable[TicketStatus] = DEFAULT_PAUSE_STATES,
                  paginate: bool = True) -> Select[TicketRow]:
    """The tickets of `f` in its order; one page of them unless `paginate` is False (the exports)."""
    stmt = select(TicketRow).where(*ticket_where(f, store_ids, now=now, reminder_lead=reminder_lead, tz=tz,
                                                 pause_states=pause_states)).order_by(*order_by(f))
    if paginate:
        stmt = stmt.limit(f.per).offset((f.page - 1) * f.per)
    return stmt


def count_select(f: TicketFilter, store_ids: frozenset[str] | None, *, now: datetime, reminder_lead: timedelta,
                 tz: tzinfo = DEFAULT_ZONE, pause_states: Iterable[TicketStatus] = DEFAULT_PAUSE_STATES,
                 ignore_status: bool = True) -> Select[str, int]:
    """Rows (status, count) for the same filter. With `ignore_status` (default) the status filter is left
    out, so that the tabs of the other states show how many they would hold."""
    counted = TicketFilter(**{**_fields(f), "statuses": ()}) if ignore_status else f
    where = ticket_where(counted, store_ids, now=now, reminder_lead=reminder_lead, tz=tz, pause_states=pause_states)
    return select(col(TicketRow.status), func.count()).where(*where).group_by(col(TicketRow.status))


def _fields(f: TicketFilter) -> dict[str, Any]:
    return {name: getattr(f, name) for name in TicketFilter.__dataclass_fields__}
