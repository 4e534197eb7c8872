"""What the tracking page says (core/tracking/timeline.py): the template's steps and the trail in customer
words, as pure functions of a ticket, its audit events and names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.model import AuditEvent, Role, Ticket, TicketStatus
from core.tracking.timeline import PersonName, customer_timeline, main_path, status_note, status_steps
from core.workflow import repair_service_workflow, with_qc

S = TicketStatus
T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Shanghai")


def ticket(status: TicketStatus) -> Ticket:
    return Ticket(number="GD-20261207-0001", customer_id="cust", description="空调不制冷", status=status,
                  created_at=T0, updated_at=T0, assignee_id="tech")


def steps(status: TicketStatus, *, qc: bool = False) -> list[tuple[str, str]]:
    workflow = with_qc(repair_service_workflow(), qc)
    return [(s.label, s.state) for s in status_steps(workflow, ticket(status))]


def test_the_main_path_leaves_out_detours() -> None:
    assert main_path(repair_service_workflow(), S.PENDING_DISPATCH) == (
        S.PENDING_DISPATCH, S.DISPATCHED, S.ACCEPTED, S.CHECKED_IN, S.IN_PROGRESS, S.PENDING_SIGNOFF, S.CLOSED)
    assert S.PENDING_QC in main_path(with_qc(repair_service_workflow(), True), S.PENDING_DISPATCH)


def test_steps_follow_the_status() -> None:
    assert steps(S.ACCEPTED) == [("已受理", "done"), ("安排技师", "done"), ("技师已接单", "current"),
                                 ("技师已到达", "todo"), ("维修中", "todo"), ("待您签字", "todo"), ("已完成", "todo")]
    assert [label for label, _ in steps(S.PENDING_QC, qc=True)][5] == "质检"
    assert all(state == "done" for _, state in steps(S.CLOSED))
    assert all(state == "todo" for _, state in steps(S.CANCELLED)) and status_note(ticket(S.CANCELLED))
    # A detour shows at the step it hangs off, with its note.
    assert ("维修中", "current") in steps(S.WAITING_PARTS) and status_note(ticket(S.WAITING_PARTS)) == "等待备件"
    assert ("维修中", "current") in steps(S.WAITING_CUSTOMER_PLAN)
    assert steps(S.TRIAGE)[0] == ("已受理", "current")


def event(kind: str, actor: str, minutes: int, **payload: object) -> AuditEvent:
    return AuditEvent(kind=kind, actor_id=actor, at=T0 + timedelta(minutes=minutes), payload=dict(payload))


def test_the_trail_in_customer_words() -> None:
    people = {"tech": PersonName("技师 王师傅", Role.TECHNICIAN), "sup": PersonName("主管 李", Role.SUPERVISOR)}
    events = [
        event("ticket_created", "cust", 0, status="pending_dispatch"),
        event("sla_started", "system", 0, cell="x"),
        event("status_changed", "system", 0, transition="dispatch", to="dispatched"),
        event("offer_sent", "system", 0, person_id="tech-huang"),
        event("status_changed", "sup", 1, transition="reassign", to="dispatched"),
        event("status_changed", "tech", 2, transition="accept", to="accepted"),
        event("photo_added", "tech", 20, sha256="a" * 64),
        event("status_changed", "tech", 22, transition="check_in", to="checked_in"),
        event("photo_added", "tech", 30, sha256="b" * 64),
        event("photo_added", "tech", 31, sha256="c" * 64),
        event("card_action", "cust", 40, values={"rating": "5"}),
        event("signed_off", "cust", 40, rating=5),
    ]
    trail = [(e.who, e.text, len(e.photos)) for e in customer_timeline(ticket(S.CLOSED), events, people, ZONE)]
    assert trail == [
        ("您", "提交了报修：空调不制冷", 0),
        ("系统", "正在为您安排技师", 0),  # once: the reassignment before the acceptance says nothing new
        ("技师 王师傅", "已接单，正在赶来", 0),
        ("技师 王师傅", "上传了 1 张照片", 1),
        ("技师 王师傅", "已于14:22到达现场", 0),  # in the tenant's zone
        ("技师 王师傅", "上传了 2 张照片", 2),
        ("您", "签字确认完工，评分 5 分", 0),
    ]
