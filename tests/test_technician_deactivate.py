"""`技师 停用` does what `人员 停用`, the directory sync and the import do for a technician who leaves
(issue 20): their open jobs go back to dispatch, and the answer says which."""

from __future__ import annotations

from pathlib import Path

from core.model import TicketStatus
from tests.playground_client import PlaygroundUser
from tests.sla_support import force
from tests.test_dispatch_service import _set_store
from tests.test_dispatch_support import clocked, person, report, the_offer, ticket
from tests.test_org_admin import _audit


async def test_deactivating_a_technician_sends_his_open_jobs_back_to_dispatch(database_url: str,
                                                                              tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        boss = PlaygroundUser(client, "sup-li")
        await PlaygroundUser(client, "cust-s01").say("你好")
        await _set_store(rt, "cust-s01", "S01")
        accepted, _ = await report(client, "cust-s01", "刹车异响，踩下去有怪声")
        holder, card = await the_offer(client, accepted)
        await PlaygroundUser(client, holder).press(card["id"], "accept")
        assert (await ticket(rt, accepted)).status is TicketStatus.ACCEPTED
        waiting, _ = await report(client, "cust-s01", "中控黑屏，仪表不亮")
        await force(rt, waiting, status=TicketStatus.WAITING_PARTS, assignee_id=holder)

        await boss.say(f"技师 停用 {holder}")
        answer = await boss.last_text()
        assert "已停用" in answer and "不受影响" not in answer
        assert accepted in answer and waiting in answer and "退回派单" in answer
        assert not (await person(rt, holder)).active
        after = await ticket(rt, accepted)
        assert after.assignee_id != holder
        assert after.status in {TicketStatus.DISPATCHED, TicketStatus.PENDING_DISPATCH}
        # The job waiting for parts needs nobody now: it stays, and the supervisor is told to 转派 it.
        assert (await ticket(rt, waiting)).assignee_id == holder
        told = [m for m in await boss.texts() if waiting in m and "转派" in m and "已停用" in m]
        assert told
        released = await _audit(rt, "technician_jobs_released")
        assert released[-1]["person_id"] == holder and set(released[-1]["tickets"]) == {accepted, waiting}
        assert released[-1]["to_supervisors"] == [waiting]
        assert (await _audit(rt, "technician_deactivated"))[-1]["person_id"] == holder


async def test_deactivating_a_technician_without_jobs_says_so(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        boss = PlaygroundUser(client, "sup-li")
        await boss.say("技师 停用 tech-huang")
        answer = await boss.last_text()
        assert "已停用" in answer and "没有未结工单" in answer
        assert not await _audit(rt, "technician_jobs_released")
