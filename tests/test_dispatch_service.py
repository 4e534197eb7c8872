"""Dispatch end to end through the playground: offer on report, 接单, 拒单, expiry, triage, reassignment.

Demo directory: tech-wang (S01 浦东, OBD认证, 电控+机械), tech-liu (S02 徐汇, OBD认证, 电控+空调, excludes
机械类), tech-xu (S03 杭州, OBD认证), tech-zhang (S01, 机械类 only), tech-huang (S02, no OBD). All rated
4.6. A customer without store or site gives every technician the same distance score, so ties go
to the smaller id: tech-liu, then tech-wang, then tech-xu for 电控类.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from core.commands import Transition
from core.dispatch.admin import DryRunDispatch
from core.model import TicketStatus
from tests.playground_client import PlaygroundUser
from tests.test_dispatch_support import (
    OBD_TECHS,
    clocked,
    events,
    move,
    offer_timer,
    open_offer_cards,
    person,
    report,
    set_duty,
    the_offer,
    ticket,
)
from tests.test_dispatch_support import (
    advance as advance_clock,
)

S = TicketStatus


async def _set_store(rt, person_id: str, store_id: str) -> None:  # type: ignore[no-untyped-def]
    async with rt.uow() as uow:
        found = await uow.get_person(person_id)
        assert found is not None
        found.store_id = store_id
        await uow.save_person(found)
        await uow.commit()


async def test_report_offers_the_job_to_an_obd_technician_in_the_same_request(database_url: str,
                                                                               tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        number, _ = await report(client, "cust-a", "中控黑屏")
        # The POST has returned: the ticket was dispatched in the same transaction as its creation.
        t = await ticket(rt, number)
        assert t.status is S.DISPATCHED and t.category == "电控类"
        assert t.assignee_id == "tech-liu"  # all tie at 0.692; the smaller id wins
        assert t.first_response_at == t.created_at  # the technician's notification is queued at once
        tech, card = await the_offer(client, number)
        assert tech == "tech-liu"
        assert number in card["title"]
        assert [(a["id"], a["label"]) for a in card["actions"]] == [("accept", "接单"), ("decline", "拒单")]
        facts = dict(card["facts"])
        assert facts["故障"] == "中控黑屏" and facts["分类"] == "电控类" and facts["客户"]
        assert "地点" in facts and "资质匹配 1.00×40%" in facts["为什么派给您"]
        assert "具备电控类技能，持有OBD认证" in card["body"]
        assert card["fields"][0]["id"] == "reason" and card["fields"][0]["kind"] == "select"
        # The customer is told who is coming.
        assert any("刘师傅" in text for text in await PlaygroundUser(client, "cust-a").texts())
        # A durable expiry timer, 15 minutes by default.
        timer = await offer_timer(rt, number)
        assert timer is not None and timer.state == "pending"
        assert timer.due_at == clock.now() + timedelta(minutes=15)
        # Audited with the full score breakdown.
        sent = await events(rt, number, "offer_sent")
        assert len(sent) == 1 and sent[0]["person_id"] == "tech-liu" and sent[0]["policy_version"] == 0
        breakdown = sent[0]["candidate"]
        assert breakdown["score"] == 0.692
        assert [c["key"] for c in breakdown["components"]] == ["qualification", "distance", "load", "rating"]
        assert breakdown["site_source"] == "unknown"


async def test_accept_moves_to_accepted_and_tells_the_customer(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-b", "中控黑屏")
        tech, card = await the_offer(client, number)
        await PlaygroundUser(client, tech).press(card["id"], "accept")
        t = await ticket(rt, number)
        assert t.status is S.ACCEPTED and t.assignee_id == tech
        assert t.data["dispatch"]["offer"] is None and t.data["dispatch"]["accepted"]["person_id"] == tech
        assert any("已接单" in text and "刘师傅" in text for text in await PlaygroundUser(client, "cust-b").texts())
        closed = (await PlaygroundUser(client, tech).cards("offer"))[-1]
        assert closed["state"] == "used" and "接单" in closed["closed_note"]
        assert (await offer_timer(rt, number)).state == "cancelled"  # type: ignore[union-attr]
        accepted = await events(rt, number, "offer_accepted")
        assert len(accepted) == 1 and accepted[0]["actor"] == tech and accepted[0]["via"] == "card"
        assert accepted[0]["candidate"]["person_id"] == tech
        # The response SLA is met by the acceptance (core.sla.tracking follows the move).
        assert t.data["sla"]["response"]["met_at"] is not None


async def test_decline_with_a_reason_offers_the_next_candidate_at_once(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-c", "中控黑屏")
        offered = []
        for expected in ("tech-liu", "tech-wang"):
            tech, card = await the_offer(client, number)
            assert tech == expected
            offered.append(tech)
            answer = await PlaygroundUser(client, tech).press(card["id"], "decline", {"reason": "too_far"})
            assert answer["accepted"]
        tech, _ = await the_offer(client, number)
        assert tech == "tech-xu"
        t = await ticket(rt, number)
        assert t.status is S.DISPATCHED and t.assignee_id == "tech-xu" and not t.needs_review
        assert t.data["dispatch"]["excluded"] == offered
        declined = await events(rt, number, "offer_declined")
        assert [(d["person_id"], d["reason"]) for d in declined] == [("tech-liu", "距离太远"),
                                                                     ("tech-wang", "距离太远")]
        assert all(d["candidate"]["components"] for d in declined)
        assert any("改派" in text for text in await PlaygroundUser(client, "cust-c").texts())


async def test_text_commands_accept_and_decline(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-d", "中控黑屏")
        liu = PlaygroundUser(client, "tech-liu")
        await liu.say(f"拒单 {number} 车在外地")
        assert "已拒单（车在外地）" in await liu.last_text()
        tech, _ = await the_offer(client, number)
        assert tech == "tech-wang"
        (card,) = [c for c in await liu.cards("offer") if c["ticket_number"] == number]
        assert card["state"] == "used" and "车在外地" in card["closed_note"]
        await PlaygroundUser(client, "tech-wang").say("接单")  # the only pending offer: no number needed
        t = await ticket(rt, number)
        assert t.status is S.ACCEPTED and t.assignee_id == "tech-wang"
        assert await open_offer_cards(client, number) == {}  # the card was closed too


async def test_mechanical_faults_are_never_offered_to_liu(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-e", "底盘有异响")
        offered = []
        while True:
            offers = await open_offer_cards(client, number)
            if not offers:
                break
            (tech, card), = offers.items()
            offered.append(tech)
            await PlaygroundUser(client, tech).press(card["id"], "decline", {"reason": "too_busy"})
        assert "tech-liu" not in offered  # tech-liu excludes 机械类
        assert sorted(offered) == ["tech-huang", "tech-wang", "tech-xu", "tech-zhang"]
        t = await ticket(rt, number)
        assert t.status is S.PENDING_DISPATCH and t.assignee_id is None  # nobody left


async def test_distance_from_the_customers_store_and_fresh_positions(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        await PlaygroundUser(client, "cust-hz").say("你好")
        await _set_store(rt, "cust-hz", "S03")  # 杭州滨江店: tech-xu's home store
        first, _ = await report(client, "cust-hz", "中控黑屏")
        assert (await ticket(rt, first)).assignee_id == "tech-xu"
        sent = (await events(rt, first, "offer_sent"))[0]["candidate"]
        assert sent["site_source"] == "store" and sent["position_source"] == "home_store"
        assert sent["distance_km"] == 0.0
        await PlaygroundUser(client, "tech-xu").say(f"拒单 {first} 有事")  # xu's load goes back to 0
        # tech-liu reports a position in Hangzhou: from now on he is as close as tech-xu (tie → smaller id).
        liu = PlaygroundUser(client, "tech-liu")
        resp = await client.post("/playground/api/messages",
                                 json={"user": "tech-liu", "location": {"lat": 30.2084, "lng": 120.2106}})
        assert resp.status == 200
        await liu.say(f"拒单 {first} 在忙")  # liu got `first` after xu declined; decline it to free him
        second, _ = await report(client, "cust-hz", "新问题 中控黑屏了")  # else a follow-up on `first` (issue 19)
        assert (await ticket(rt, second)).assignee_id == "tech-liu"
        breakdown = (await events(rt, second, "offer_sent"))[0]["candidate"]
        assert breakdown["position_source"] == "last_position" and breakdown["distance_km"] < 0.01
        # Two hours later the position is stale: back to his home store (徐汇, ~165 km away).
        await liu.say(f"拒单 {second} 在忙")
        await PlaygroundUser(client, "tech-xu").say(f"拒单 {second} 在忙")
        await advance_clock(rt, clock, hours=2)
        third, _ = await report(client, "cust-hz", "新问题 中控还是黑屏")
        assert (await ticket(rt, third)).assignee_id == "tech-xu"
        dry = await rt.service.handle(DryRunDispatch(third), await person(rt, "admin"))
        assert "tech-liu" in dry and "tech-xu" in dry


async def test_no_answer_in_time_goes_to_the_next_and_flags_for_review(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        number, _ = await report(client, "cust-f", "中控黑屏")
        assert (await ticket(rt, number)).assignee_id == "tech-liu"
        await advance_clock(rt, clock, minutes=14, seconds=59)
        assert (await ticket(rt, number)).assignee_id == "tech-liu"  # not yet
        await advance_clock(rt, clock, seconds=1)
        t = await ticket(rt, number)
        assert t.status is S.DISPATCHED and t.assignee_id == "tech-wang"
        assert t.needs_review  # 待复核
        assert t.data["dispatch"]["excluded"] == ["tech-liu"]
        liu = PlaygroundUser(client, "tech-liu")
        (old,) = [c for c in await liu.cards("offer") if c["ticket_number"] == number]
        assert old["state"] == "used" and "未响应" in old["closed_note"]
        assert any("未响应" in text for text in await liu.texts())
        boss = await PlaygroundUser(client, "sup-li").texts()  # tech-liu's direct supervisor
        assert any(number in text and "待复核" in text and "王师傅" in text for text in boss)
        assert not any(number in text for text in await PlaygroundUser(client, "sup-chen").texts())
        expired = await events(rt, number, "offer_expired")
        assert len(expired) == 1 and expired[0]["person_id"] == "tech-liu" and expired[0]["candidate"]
        # The new offer has its own 15 minutes.
        timer = await offer_timer(rt, number)
        assert timer is not None and timer.state == "pending" and timer.due_at == clock.now() + timedelta(minutes=15)
        tech, card = await the_offer(client, number)
        await PlaygroundUser(client, tech).press(card["id"], "accept")
        t = await ticket(rt, number)
        assert t.status is S.ACCEPTED and t.assignee_id == "tech-wang" and t.needs_review
        # The expired alarm of the first offer is spent: firing again changes nothing.
        await advance_clock(rt, clock, minutes=30)
        assert (await ticket(rt, number)).status is S.ACCEPTED


async def test_nobody_left_goes_to_the_supervisor_who_picks_someone(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        await set_duty(rt, "tech-wang", False)
        await set_duty(rt, "tech-xu", False)
        number, _ = await report(client, "cust-g", "中控黑屏")
        liu = PlaygroundUser(client, "tech-liu")
        await liu.say(f"拒单 {number} 没有配件")
        t = await ticket(rt, number)
        assert t.status is S.PENDING_DISPATCH and t.assignee_id is None and t.data["dispatch"]["stalled_at"]
        assert await open_offer_cards(client, number) == {}
        stalled = await events(rt, number, "dispatch_stalled")
        assert len(stalled) == 1 and stalled[0]["excluded"] == ["tech-liu"]
        assert any("主管人工安排" in text for text in await PlaygroundUser(client, "cust-g").texts())
        boss = PlaygroundUser(client, "sup-li")
        (card,) = [c for c in await boss.cards("task") if c["ticket_number"] == number]
        assert "无人可派" in card["title"]
        assert [o["value"] for o in card["fields"][0]["options"]] == ["tech-liu"]  # on duty, OBD
        await boss.press(card["id"], "assign", {"technician": "tech-liu"})
        t = await ticket(rt, number)
        assert t.status is S.DISPATCHED and t.assignee_id == "tech-liu"
        manual = await events(rt, number, "offer_reassigned")
        assert manual[-1]["by"] == "sup-li" and manual[-1]["candidate"]["person_id"] == "tech-liu"
        assert [o["code"] for o in manual[-1]["overridden"]] == ["excluded_id"]
        tech, card = await the_offer(client, number)
        assert tech == "tech-liu" and "主管转派" in card["body"]
        await liu.press(card["id"], "accept")
        assert (await ticket(rt, number)).status is S.ACCEPTED


async def test_supervisor_reassigns_an_open_offer(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-h", "中控黑屏")
        boss = PlaygroundUser(client, "sup-li")
        await boss.say(f"转派 {number} tech-xu 客户指定")
        assert "转派给 技师 徐师傅" in await boss.last_text()
        offers = await open_offer_cards(client, number)
        assert list(offers) == ["tech-xu"] and "客户指定" in offers["tech-xu"]["body"]
        (old,) = [c for c in await PlaygroundUser(client, "tech-liu").cards("offer") if c["ticket_number"] == number]
        assert old["state"] == "used" and "转派" in old["closed_note"]
        kinds = [e["kind"] for e in await events(rt, number) if e["kind"].startswith("offer_")]
        assert kinds == ["offer_sent", "offer_withdrawn", "offer_reassigned"]
        reassigned = (await events(rt, number, "offer_reassigned"))[0]
        assert reassigned["person_id"] == "tech-xu" and reassigned["reason"] == "客户指定"
        assert reassigned["candidate"]["score"] > 0 and reassigned["overridden"] == []
        t = await ticket(rt, number)
        assert t.status is S.DISPATCHED and t.assignee_id == "tech-xu"


async def test_triage_classification_dispatches(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-i", "设备故障了")
        assert (await ticket(rt, number)).status is S.TRIAGE
        await PlaygroundUser(client, "sup-li").say(f"分诊 {number} 电控类")
        t = await ticket(rt, number)
        assert t.status is S.DISPATCHED and t.assignee_id in OBD_TECHS
        assert (await events(rt, number, "offer_sent"))[0]["trigger"] == "classify"


async def test_cancelling_withdraws_the_offer(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        number, _ = await report(client, "cust-j", "中控黑屏")
        await rt.service.handle(Transition(number, "cancel"), await person(rt, "cust-j"))
        liu = PlaygroundUser(client, "tech-liu")
        (card,) = [c for c in await liu.cards("offer") if c["ticket_number"] == number]
        assert card["state"] == "used" and "取消" in card["closed_note"]
        assert any("已撤回" in text for text in await liu.texts())
        assert (await events(rt, number, "offer_withdrawn"))[0]["person_id"] == "tech-liu"
        # The expiry alarm is left to find the offer gone: firing it changes nothing.
        before = await ticket(rt, number)
        await advance_clock(rt, clock, minutes=15)  # (the background engine may be the one that fires it)
        assert (await offer_timer(rt, number)).state == "fired"  # type: ignore[union-attr]
        after = await ticket(rt, number)
        assert (after.status, after.version, after.needs_review) == (before.status, before.version, False)
        assert await events(rt, number, "offer_expired") == []


async def test_a_generic_dispatch_and_accept_keep_the_offer_state_consistent(database_url: str,
                                                                             tmp_path: Path) -> None:
    """Other features (and the SLA tests) move tickets with plain transitions: the offer follows."""
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-k", "设备故障了")
        async with rt.uow() as uow:
            found = await uow.get_ticket(number, lock=True)
            assert found is not None
            found.assignee_id = "tech-zhang"
            await uow.save_ticket(found)
            await uow.commit()
        await move(rt, number, "dispatch", "sup-li")
        tech, _card = await the_offer(client, number)
        assert tech == "tech-zhang"
        await move(rt, number, "accept", "tech-zhang")
        t = await ticket(rt, number)
        assert t.status is S.ACCEPTED and t.data["dispatch"]["offer"] is None
        assert await open_offer_cards(client, number) == {}
        assert (await offer_timer(rt, number)).state == "cancelled"  # type: ignore[union-attr]
