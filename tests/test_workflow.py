"""The state machine refuses illegal moves with a clear reason and changes nothing."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from core.commands import Transition
from core.errors import IllegalTransition, NotAllowed
from core.model import Role, TicketStatus
from core.workflow import repair_service_workflow
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser


def test_transition_table_checks_state_and_role() -> None:
    wf = repair_service_workflow()
    assert wf.check(TicketStatus.DISPATCHED, "accept", Role.TECHNICIAN).target == TicketStatus.ACCEPTED
    with pytest.raises(IllegalTransition, match="不能执行「完工」"):
        wf.check(TicketStatus.DISPATCHED, "complete", Role.TECHNICIAN)
    with pytest.raises(NotAllowed):
        wf.check(TicketStatus.PENDING_SIGNOFF, "sign_off", Role.ADMIN)
    with pytest.raises(IllegalTransition):
        wf.check(TicketStatus.CLOSED, "no_such_step", Role.ADMIN)


def test_only_the_customer_can_close() -> None:
    wf = repair_service_workflow()
    closers = [t for t in wf.transitions if t.target == TicketStatus.CLOSED]
    assert [t.name for t in closers] == ["sign_off"]
    assert closers[0].roles == frozenset({Role.CUSTOMER}) and "signoff" in closers[0].guards


def test_workflow_round_trips_as_data() -> None:
    wf = repair_service_workflow()
    assert type(wf).from_dict(wf.to_dict()) == wf


async def test_illegal_move_changes_nothing(app_client: TestClient) -> None:
    runtime = runtime_of(app_client)
    await PlaygroundUser(app_client, "cust-wf").say("底盘有异响")
    number = (await (await app_client.get("/api/tickets")).json())[0]["number"]
    async with runtime.uow() as uow:
        admin = await uow.get_person("admin")
        before = await uow.get_ticket(number)
        trail_before = len(await uow.audit_for_ticket(number))
    assert admin and before
    with pytest.raises(IllegalTransition):
        await runtime.service.handle(Transition(number, "complete"), admin)
    async with runtime.uow() as uow:
        after = await uow.get_ticket(number)
        assert after and after.status == before.status and after.version == before.version
        assert len(await uow.audit_for_ticket(number)) == trail_before
