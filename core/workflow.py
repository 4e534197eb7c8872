"""The ticket state machine as data: a transition table with role checks and guards.

A `Workflow` is a template per business line (维修服务, 生产工序 ...). The service asks
it whether a named move is legal from the current state for the actor's role; anything
else is refused with a reason and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import IllegalTransition, NotAllowed
from core.model import Role, TicketStatus

S = TicketStatus
OPEN_WORK_STATES = frozenset(
    {S.TRIAGE, S.PENDING_DISPATCH, S.DISPATCHED, S.ACCEPTED, S.CHECKED_IN, S.IN_PROGRESS,
     S.WAITING_CUSTOMER_PLAN, S.PENDING_QC, S.REOPENED}
)


@dataclass(frozen=True, slots=True)
class Transition:
    name: str
    sources: frozenset[TicketStatus]
    target: TicketStatus
    roles: frozenset[Role]  # who may trigger it; the system actor may trigger anything
    label: str  # Chinese verb shown to users
    # Named guards the service checks before moving (see core.lifecycle.work): e.g. "assignee",
    # "customer", "photos", "location", "signoff".
    guards: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sources": sorted(s.value for s in self.sources),
            "target": self.target.value,
            "roles": sorted(r.value for r in self.roles),
            "label": self.label,
            "guards": list(self.guards),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transition:
        return cls(
            name=data["name"],
            sources=frozenset(TicketStatus(s) for s in data["sources"]),
            target=TicketStatus(data["target"]),
            roles=frozenset(Role(r) for r in data["roles"]),
            label=data["label"],
            guards=tuple(data.get("guards", ())),
        )


@dataclass(frozen=True, slots=True)
class Workflow:
    name: str
    transitions: tuple[Transition, ...]
    # Settings of the template that guards read (photo counts, QC step ...).
    options: dict[str, Any] = field(default_factory=dict)

    def transition(self, name: str) -> Transition:
        for t in self.transitions:
            if t.name == name:
                return t
        raise IllegalTransition(f"流程「{self.name}」中没有「{name}」这一步。", transition=name)

    def check(self, current: TicketStatus, name: str, role: Role | None) -> Transition:
        """Return the transition if legal from `current` for `role` (None = system)."""
        t = self.transition(name)
        if current not in t.sources:
            allowed = "、".join(sorted(s.label for s in t.sources))
            raise IllegalTransition(
                f"工单当前状态为「{current.label}」，不能执行「{t.label}」（仅在 {allowed} 时可以）。",
                transition=name,
                status=current.value,
            )
        if role is not None and role not in t.roles:
            raise NotAllowed(f"您没有权限执行「{t.label}」。", transition=name, role=role.value)
        return t

    def available(self, current: TicketStatus, role: Role | None) -> list[Transition]:
        return [t for t in self.transitions if current in t.sources and (role is None or role in t.roles)]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "transitions": [t.to_dict() for t in self.transitions], "options": self.options}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workflow:
        return cls(
            name=data["name"],
            transitions=tuple(Transition.from_dict(t) for t in data["transitions"]),
            options=dict(data.get("options", {})),
        )


def _t(name: str, sources: set[TicketStatus], target: TicketStatus, roles: set[Role], label: str,
       guards: tuple[str, ...] = ()) -> Transition:
    return Transition(name, frozenset(sources), target, frozenset(roles), label, guards)


STAFF = {Role.SUPERVISOR, Role.ADMIN}
TECH = {Role.TECHNICIAN}


def repair_service_workflow() -> Workflow:
    """Default template 维修服务 (seed 2: states down to atomic steps, sign-off mandatory)."""
    return Workflow(
        name="维修服务",
        transitions=(
            _t("classify", {S.TRIAGE}, S.PENDING_DISPATCH, STAFF, "分诊"),
            _t("dispatch", {S.PENDING_DISPATCH, S.TRIAGE, S.REOPENED}, S.DISPATCHED, STAFF, "派单"),
            _t("accept", {S.DISPATCHED}, S.ACCEPTED, TECH, "接单", ("assignee",)),
            _t("decline", {S.DISPATCHED}, S.PENDING_DISPATCH, TECH, "拒单", ("assignee",)),
            _t("expire_offer", {S.DISPATCHED}, S.PENDING_DISPATCH, set(), "超时改派"),
            _t("reassign", {S.DISPATCHED, S.ACCEPTED, S.CHECKED_IN, S.IN_PROGRESS, S.PENDING_DISPATCH,
                            S.TRIAGE, S.REOPENED}, S.DISPATCHED, STAFF, "转派"),
            _t("check_in", {S.ACCEPTED}, S.CHECKED_IN, TECH, "签到", ("assignee", "location", "checkin_photo")),
            _t("start_work", {S.CHECKED_IN}, S.IN_PROGRESS, TECH, "开始检修", ("assignee",)),
            _t("wait_parts", {S.IN_PROGRESS}, S.WAITING_PARTS, TECH, "等待备件", ("assignee",)),
            _t("parts_ready", {S.WAITING_PARTS}, S.IN_PROGRESS, {Role.WAREHOUSE, *TECH, *STAFF}, "备件到位"),
            _t("propose_plan", {S.IN_PROGRESS}, S.WAITING_CUSTOMER_PLAN, TECH, "提交方案", ("assignee",)),
            _t("approve_plan", {S.WAITING_CUSTOMER_PLAN}, S.IN_PROGRESS, {Role.CUSTOMER}, "同意方案", ("customer",)),
            _t("reject_plan", {S.WAITING_CUSTOMER_PLAN}, S.IN_PROGRESS, {Role.CUSTOMER}, "不同意方案", ("customer",)),
            _t("complete", {S.IN_PROGRESS}, S.PENDING_SIGNOFF, TECH, "完工", ("assignee", "photos")),
            _t("qc_pass", {S.PENDING_QC}, S.PENDING_SIGNOFF, {Role.QUALITY, *STAFF}, "质检通过"),
            _t("qc_fail", {S.PENDING_QC}, S.IN_PROGRESS, {Role.QUALITY, *STAFF}, "质检不通过"),
            _t("sign_off", {S.PENDING_SIGNOFF}, S.CLOSED, {Role.CUSTOMER}, "客户签字结案", ("customer", "signoff")),
            _t("still_broken", {S.PENDING_SIGNOFF}, S.IN_PROGRESS, {Role.CUSTOMER}, "仍未修好", ("customer",)),
            _t("reopen", {S.CLOSED}, S.REOPENED, {Role.CUSTOMER, *STAFF}, "重开"),
            # Staff at any open state; the customer until a technician accepted (guard "cancellable").
            _t("cancel", set(OPEN_WORK_STATES) | {S.WAITING_PARTS, S.PENDING_SIGNOFF}, S.CANCELLED,
               {Role.CUSTOMER, *STAFF}, "取消", ("cancellable",)),
        ),
        options=dict(DEFAULT_OPTIONS),
    )


# Template settings the lifecycle reads (core/lifecycle/).
DEFAULT_OPTIONS: dict[str, Any] = {
    "completion_photos": 3,  # distinct photos since work started: fault part, meter reading, nameplate
    "checkin_requires_photo": True,
    "checkin_requires_location": True,
    "checkin_window_s": 600,  # location and photo may come in any order within this window
    "parts_escalation_h": 48,  # 等待备件 without an update this long → 紧急缺件
    "signoff_callback_s": 45,  # unsigned this long after the card was sent → callback task
    "rework_window_days": 7,  # 仍未修好 within this many days of closing reopens the ticket
    "qc_required": False,  # 完工 goes to 待质检 first (the complete step targets pending_qc)
}


def option(workflow: Workflow, name: str) -> Any:
    """A template setting, falling back to the shipped default for templates saved before it existed."""
    return workflow.options.get(name, DEFAULT_OPTIONS[name])


def with_qc(workflow: Workflow, required: bool) -> Workflow:
    """The same template with 完工 going to 待质检 (required) or straight to 待客户签字."""
    target = S.PENDING_QC if required else S.PENDING_SIGNOFF
    steps = tuple(replace(t, target=target) if t.name == "complete" else t for t in workflow.transitions)
    return replace(workflow, transitions=steps, options={**workflow.options, "qc_required": required})
