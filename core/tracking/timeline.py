"""What the tracking page tells a customer (issue 21): the template's steps as a status bar and the ticket's
trail in customer words — who did what when, with which photos — and where the technician is.

Pure functions over a ticket, its audit events and the names of the people in them: the page
(bot/web/customer/tracking.py) reads those, this decides what a customer sees. Internal facts (SLA clocks,
offers to technicians who declined, card presses, scores) never reach the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.model import AuditEvent, Role, Ticket, TicketStatus
from core.workflow import Workflow

S = TicketStatus
TECHNICIAN_TITLE = "技师"
# What a customer calls each step; states a template adds fall back to their status label.
CUSTOMER_STEP_LABELS: dict[TicketStatus, str] = {
    S.TRIAGE: "已受理", S.PENDING_DISPATCH: "已受理", S.DISPATCHED: "安排技师", S.ACCEPTED: "技师已接单",
    S.CHECKED_IN: "技师已到达", S.IN_PROGRESS: "维修中", S.PENDING_QC: "质检", S.PENDING_SIGNOFF: "待您签字",
    S.CLOSED: "已完成",
}
# States off the main path, shown at the step they hang off, with their own word.
SIDE_STATE_NOTES: dict[TicketStatus, str] = {
    S.WAITING_PARTS: "等待备件", S.WAITING_CUSTOMER_PLAN: "等待您确认维修方案", S.REOPENED: "已重开（返修）",
}
# The audit kinds the trail is told from (the page reads no others).
TIMELINE_KINDS = ("ticket_created", "site_located", "location_shared", "photo_added", "signed_off", "status_changed")
# Average urban travel speed for the arrival estimate (a rough figure, said to be one).
TRAVEL_KMH = 30.0


@dataclass(frozen=True, slots=True)
class Step:
    label: str
    state: str  # "done", "current" or "todo"


@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime
    who: str
    text: str
    photos: tuple[str, ...] = ()  # sha256 of the photos this entry shows


@dataclass(frozen=True, slots=True)
class PersonName:
    name: str
    role: Role


_CACHE: dict[tuple[int, TicketStatus], tuple[Workflow, tuple[TicketStatus, ...]]] = {}


def main_path(workflow: Workflow, start: TicketStatus) -> tuple[TicketStatus, ...]:
    """The template's steps from `start` to 已结案: the longest path that visits no state twice, so detours
    (waiting for parts, a plan, a declined offer) are not steps of their own. Cached per template."""
    key = (id(workflow), start)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] is workflow:
        return cached[1]
    edges: dict[TicketStatus, list[TicketStatus]] = {}
    for step in workflow.transitions:
        if step.target in {S.CANCELLED, S.REOPENED}:
            continue
        for source in step.sources:
            if step.target not in edges.setdefault(source, []):
                edges[source].append(step.target)
    best: tuple[TicketStatus, ...] = (start,)

    def walk(path: list[TicketStatus]) -> None:
        nonlocal best
        here = path[-1]
        if here == S.CLOSED:
            if len(path) > len(best) or best[-1] != S.CLOSED:
                best = tuple(path)
            return
        for target in edges.get(here, ()):
            if target not in path:
                path.append(target)
                walk(path)
                path.pop()

    walk([start])
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = (workflow, best)
    return best


def status_steps(workflow: Workflow, ticket: Ticket, started: TicketStatus = S.PENDING_DISPATCH) -> list[Step]:
    """The status bar: the template's main path, done up to the ticket's step. A side state (waiting for
    parts) shows at the step it hangs off; a cancelled ticket has every step left undone."""
    path = main_path(workflow, S.TRIAGE if started == S.TRIAGE else S.PENDING_DISPATCH)
    labels: list[str] = []
    states: list[TicketStatus] = []
    for state in path:  # 待分诊 and 待派单 are one step to a customer (已受理)
        label = CUSTOMER_STEP_LABELS.get(state, state.label)
        if labels and labels[-1] == label:
            states[-1] = state
            continue
        labels.append(label)
        states.append(state)
    current = _position(workflow, ticket.status, states)
    steps = []
    for i, label in enumerate(labels):
        if current is None:
            shown = "todo"
        elif i < current or (i == current and ticket.status == S.CLOSED):
            shown = "done"
        else:
            shown = "current" if i == current else "todo"
        steps.append(Step(label, shown))
    return steps


def _position(workflow: Workflow, status: TicketStatus, states: list[TicketStatus]) -> int | None:
    if status == S.CANCELLED:
        return None
    if status == S.TRIAGE or status == S.REOPENED:
        return 0
    if status in states:
        return states.index(status)
    # A side state: the main step a transition into it starts from.
    for step in workflow.transitions:
        if step.target == status:
            for source in step.sources:
                if source in states:
                    return states.index(source)
    return 0


def status_note(ticket: Ticket) -> str:
    if ticket.status == S.CANCELLED:
        return "工单已取消"
    return SIDE_STATE_NOTES.get(ticket.status, "")


def technician_label(name: str) -> str:
    return name if name.startswith(TECHNICIAN_TITLE) else f"{TECHNICIAN_TITLE} {name}"


def _who(event: AuditEvent, ticket: Ticket, people: Mapping[str, PersonName]) -> str:
    if event.actor_id == ticket.customer_id:
        return "您"
    person = people.get(event.actor_id)
    if person is not None and person.role is Role.TECHNICIAN:
        return technician_label(person.name)
    return "客服" if event.actor_id != "system" else "系统"


def _clock(at: datetime, zone: Any) -> str:
    return at.astimezone(zone).strftime("%H:%M")


def customer_timeline(ticket: Ticket, events: Sequence[AuditEvent], people: Mapping[str, PersonName],
                      zone: Any) -> list[Entry]:
    """The trail in customer words, oldest first. Consecutive photos of one person are one entry."""
    entries: list[Entry] = []
    arranging = False  # 正在为您安排技师 said since the last acceptance: a reassignment says nothing new
    for event in events:
        entry = _entry(event, ticket, people, zone)
        if entry is None:
            continue
        if entry.text == ARRANGING:
            if arranging:
                continue
            arranging = True
        elif event.kind == "status_changed" and event.payload.get("transition") == "accept":
            arranging = False
        previous = entries[-1] if entries else None
        if previous is not None and entry.photos and previous.photos and previous.who == entry.who \
                and previous.text.endswith("照片") and entry.text.endswith("照片"):
            photos = previous.photos + tuple(p for p in entry.photos if p not in previous.photos)
            entries[-1] = Entry(previous.at, previous.who, f"上传了 {len(photos)} 张照片", photos)
            continue
        if previous is not None and previous.text == entry.text and previous.who == entry.who:
            continue  # 正在安排技师 after a declined offer says nothing new
        entries.append(entry)
    return entries


ARRANGING = "正在为您安排技师"
_MOVES: dict[str, str] = {
    "classify": "确认了故障类型",
    "dispatch": "正在为您安排技师", "reassign": "正在为您安排技师", "expire_offer": "正在为您安排技师",
    "decline": "正在为您安排技师",
    "accept": "已接单，正在赶来",
    "start_work": "开始检修",
    "wait_parts": "等待备件，到货后继续维修",
    "parts_ready": "备件已到位，继续维修",
    "propose_plan": "提交了维修方案，等待您确认",
    "approve_plan": "同意了维修方案",
    "reject_plan": "没有同意维修方案",
    "qc_pass": "质检通过",
    "qc_fail": "质检未通过，技师继续维修",
    "still_broken": "反馈仍未修好，技师继续维修",
    "reopen": "工单已重开（返修）",
    "cancel": "工单已取消",
}


def _entry(event: AuditEvent, ticket: Ticket, people: Mapping[str, PersonName], zone: Any) -> Entry | None:
    who = _who(event, ticket, people)
    payload = event.payload
    if event.kind == "ticket_created":
        text = "提交了报修" if who == "您" else "为您登记了报修"
        return Entry(event.at, who, f"{text}：{ticket.description[:80]}")
    if event.kind == "site_located" or (event.kind == "location_shared" and who == "您"):
        return Entry(event.at, who, "发送了现场位置")
    if event.kind == "photo_added" and isinstance(payload.get("sha256"), str):
        return Entry(event.at, who, "上传了 1 张照片", (payload["sha256"],))
    if event.kind == "signed_off":
        return Entry(event.at, who, f"签字确认完工，评分 {payload.get('rating')} 分")
    if event.kind != "status_changed":
        return None
    name = str(payload.get("transition", ""))
    if name == "check_in":
        return Entry(event.at, who, f"已于{_clock(event.at, zone)}到达现场")
    if name == "complete":
        after = "等待质检" if payload.get("to") == S.PENDING_QC.value else "请您确认并签字"
        return Entry(event.at, who, f"完成维修，{after}")
    if name == "sign_off":
        return Entry(event.at, "系统", "工单已结案")
    if name in {"dispatch", "reassign", "expire_offer", "decline"}:
        return Entry(event.at, "系统", _MOVES[name])
    if name in _MOVES:
        return Entry(event.at, who, _MOVES[name])
    to = payload.get("to")
    label = TicketStatus(to).label if to in {s.value for s in TicketStatus} else str(to)
    return Entry(event.at, who, f"工单状态更新为「{label}」")
