"""Issue 19 item 26: front-desk registration (代客报修) and the in-person signature (现场签字).

A staff member registers a fault for a customer found by person id or phone (a new phone makes a
new customer person holding it); the ticket's customer is that customer and the registering staff
member is recorded. The customer signs on their own channel, or in person on the technician's
device (`现场签字 号`: the technician gets the sign-off card to hand over; the audit marks the
signature in_person with who held the device). A staff member who just describes a fault is told to
use 代客报修 and never becomes a customer. Real app, real SQLite and PostgreSQL.
"""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlmodel import col

from bot.runtime import Runtime
from core.model import Role, TicketStatus
from storage.tables import AuditEventRow, PersonRow
from tests.sla_support import NUMBER, runtime
from tests.test_lifecycle_support import Person as User
from tests.test_lifecycle_support import accept, ticket

S = TicketStatus
GOOD = {"cause_told": "true", "parts_confirmed": "true", "rating": "5"}
PHONE = "13800138000"


async def people_with_phone(rt: Runtime, phone: str) -> list[PersonRow]:
    async with rt.sessions() as session:
        return list((await session.execute(select(PersonRow).where(col(PersonRow.phone) == phone))).scalars())


async def events(rt: Runtime, number: str, kind: str) -> list[AuditEventRow]:
    async with rt.sessions() as session:
        rows = await session.execute(select(AuditEventRow).where(
            col(AuditEventRow.ticket_number) == number, col(AuditEventRow.kind) == kind).order_by(
            col(AuditEventRow.seq)))
        return list(rows.scalars())


async def register(client: TestClient, staff: str, text: str) -> tuple[str, str]:
    """`代客报修 …` by `staff`: (ticket number, the staff member's answer)."""
    desk = User(client, staff)
    await desk.say(text)
    answer = await desk.last_text()
    found = NUMBER.search(answer)
    assert found, answer
    return found.group(0), answer


async def to_signoff(client: TestClient, number: str, technician: str = "tech-wang") -> None:
    """Accept, check in, start, three photos, 完工: the ticket waits for the customer's signature."""
    await accept(client, number, technician)
    tech = User(client, technician)
    await tech.say(f"选择 {number}")
    await tech.location(31.2, 121.5)
    await tech.image()
    await tech.say(f"开始 {number}")
    for _ in range(3):
        await tech.image()
    await tech.say(f"完工 {number}")
    assert (await ticket(client, number)).status is S.PENDING_SIGNOFF, await tech.texts()


# --- 代客报修 ------------------------------------------------------------------------------------


async def test_registering_by_phone_makes_the_customer_the_tickets_customer(app_client: TestClient) -> None:
    rt = runtime(app_client)
    number, answer = await register(app_client, "sup-li", f"代客报修 {PHONE} 底盘有异响")
    assert "现场签字" in answer, answer
    (customer,) = await people_with_phone(rt, PHONE)
    assert customer.role == Role.CUSTOMER.value and customer.id not in {"sup-li"}
    t = await ticket(app_client, number)
    assert t.customer_id == customer.id and t.description == "底盘有异响" and t.category == "机械类"
    assert t.data["front_desk"]["by"] == "sup-li"
    (created,) = await events(rt, number, "ticket_created")
    assert created.actor_id == "sup-li"
    assert created.payload["registered_by"] == "sup-li" and created.payload["customer_id"] == customer.id

    # The same phone, written differently, is the same customer: no second person.
    second, _ = await register(app_client, "tech-wang", "代客报修 138-0013-8000 中控黑屏")
    assert (await ticket(app_client, second)).customer_id == customer.id
    assert len(await people_with_phone(rt, PHONE)) == 1


async def test_registering_for_a_known_customer_by_id_tells_them(app_client: TestClient) -> None:
    number, _ = await register(app_client, "sup-li", "代客报修 cust-demo 中控黑屏")
    t = await ticket(app_client, number)
    assert t.customer_id == "cust-demo" and t.data["front_desk"]["by"] == "sup-li"
    told = [m for m in await User(app_client, "cust-demo").texts() if number in m]
    assert told and "登记" in told[0], told


async def test_front_desk_registration_also_folds_repeats_unless_it_says_new_problem(app_client: TestClient) -> None:
    first, _ = await register(app_client, "sup-li", "代客报修 cust-demo 中控黑屏")
    desk = User(app_client, "sup-li")
    await desk.say("代客报修 cust-demo 中控还是黑屏")
    answer = await desk.last_text()
    assert first in answer and "新问题" in answer, answer
    second, _ = await register(app_client, "sup-li", "代客报修 cust-demo 新问题 仪表盘不亮")
    assert second != first
    assert (await ticket(app_client, second)).description == "仪表盘不亮"


async def test_bad_front_desk_registrations_are_explained_and_change_nothing(app_client: TestClient) -> None:
    rt = runtime(app_client)
    desk = User(app_client, "sup-li")
    cases = [
        ("代客报修", "用法"),
        (f"代客报修 {PHONE}", "用法"),
        ("代客报修 12345 中控黑屏", "手机号"),
        ("代客报修 nobody-here 中控黑屏", "没有找到客户"),
        ("代客报修 tech-zhang 中控黑屏", "不是客户"),
    ]
    for text, reply in cases:
        await desk.say(text)
        assert reply in await desk.last_text(), (text, await desk.last_text())
    async with rt.uow() as uow:
        assert await uow.list_tickets(limit=10) == []


async def test_a_customer_may_not_use_front_desk_registration(app_client: TestClient) -> None:
    rt = runtime(app_client)
    customer = User(app_client, "cust-demo")
    await customer.say(f"代客报修 {PHONE} 底盘有异响")
    assert "抱歉" in await customer.last_text()
    async with rt.sessions() as session:
        refused = (await session.execute(select(AuditEventRow).where(
            col(AuditEventRow.kind) == "command_refused"))).scalars().all()
    assert [e.payload["command"] for e in refused] == ["代客报修"]
    assert await people_with_phone(rt, PHONE) == []


async def test_staff_who_describe_a_fault_are_pointed_to_front_desk_registration(app_client: TestClient) -> None:
    rt = runtime(app_client)
    for staff in ("sup-li", "tech-wang", "admin"):
        user = User(app_client, staff)
        await user.say("底盘有异响")
        answer = await user.last_text()
        assert "代客报修" in answer and "没有建单" in answer, answer
        async with rt.uow() as uow:
            assert await uow.list_tickets(customer_id=staff) == []
            person = await uow.get_person(staff)
        assert person is not None and person.role is not Role.CUSTOMER


# --- signing: on the customer's own channel, or in person ----------------------------------------


async def test_a_registered_customer_with_a_chat_signs_on_their_own_channel(app_client: TestClient) -> None:
    number, _ = await register(app_client, "sup-li", "代客报修 cust-demo 底盘有异响")
    await to_signoff(app_client, number)
    customer = User(app_client, "cust-demo")
    card = await customer.last_card("signoff")
    await User(app_client, "sup-li").press(card["id"], "sign", GOOD)  # not the recipient: refused
    assert (await ticket(app_client, number)).status is S.PENDING_SIGNOFF
    await customer.press(card["id"], "sign", GOOD)
    closed = await ticket(app_client, number)
    assert closed.status is S.CLOSED
    (signed,) = await events(runtime(app_client), number, "signed_off")
    assert signed.actor_id == "cust-demo" and not signed.payload.get("in_person")


async def test_a_walk_in_customer_signs_in_person_on_the_technicians_device(app_client: TestClient) -> None:
    rt = runtime(app_client)
    number, _ = await register(app_client, "sup-li", f"代客报修 {PHONE} 底盘有异响")
    await to_signoff(app_client, number)
    customer_id = (await ticket(app_client, number)).customer_id
    tech = User(app_client, "tech-wang")
    # The customer has no chat: the technician is told how to take the signature.
    assert [t for t in await tech.texts() if number in t and f"现场签字 {number}" in t], await tech.texts()

    # Only the ticket's technician opens it, and only at sign-off.
    other = User(app_client, "tech-zhang")
    await other.say(f"现场签字 {number}")
    assert "不是派给您的" in await other.last_text()
    boss = User(app_client, "sup-li")
    await boss.say(f"现场签字 {number}")
    assert "抱歉" in await boss.last_text()
    refusals = [e.payload["command"] for e in await events(rt, number, "command_refused")]
    assert refusals == ["现场签字", "现场签字"], refusals

    await tech.say(f"现场签字 {number}")
    card = await tech.last_card("signoff")
    assert card["ticket_number"] == number and card["state"] == "open"
    assert "交给客户" in (card.get("body") or ""), card
    await boss.press(card["id"], "sign", GOOD)  # someone else's card
    await tech.press(card["id"], "sign", {"cause_told": "true", "parts_confirmed": "true"})  # no rating
    assert "评分" in await tech.last_text()
    assert (await ticket(app_client, number)).status is S.PENDING_SIGNOFF

    await tech.press(card["id"], "sign", GOOD)
    closed = await ticket(app_client, number)
    assert closed.status is S.CLOSED
    (signed,) = await events(rt, number, "signed_off")
    assert signed.actor_id == customer_id
    assert signed.payload["in_person"] is True and signed.payload["held_by"] == "tech-wang"
    assert signed.payload["by"] == customer_id and signed.payload["rating"] == 5
    closing = [e for e in await events(rt, number, "status_changed") if e.payload["to"] == "closed"]
    assert [(e.actor_id, e.payload.get("in_person")) for e in closing] == [(customer_id, True)]
    pressed = [e for e in await events(rt, number, "card_action") if e.payload["card_id"] == card["id"]]
    assert [e.actor_id for e in pressed] == ["tech-wang"]


async def test_in_person_works_for_a_customer_with_a_chat_too_and_their_card_then_lapses(
        app_client: TestClient) -> None:
    customer = User(app_client, "cust-both")
    await customer.say("中控黑屏")
    number = NUMBER.search(await customer.last_text())
    assert number
    await to_signoff(app_client, number.group(0))
    remote = await customer.last_card("signoff")
    tech = User(app_client, "tech-wang")
    await tech.say("现场签字")  # the number is optional with one job waiting for a signature
    await tech.press((await tech.last_card("signoff"))["id"], "sign", GOOD)
    assert (await ticket(app_client, number.group(0))).status is S.CLOSED
    await customer.press(remote["id"], "sign", GOOD)
    assert "失效" in await customer.last_text()
    assert len(await events(runtime(app_client), number.group(0), "signed_off")) == 1


async def test_in_person_signing_is_refused_before_the_work_is_done(app_client: TestClient) -> None:
    number, _ = await register(app_client, "sup-li", f"代客报修 {PHONE} 底盘有异响")
    await accept(app_client, number, "tech-wang")
    tech = User(app_client, "tech-wang")
    await tech.say(f"现场签字 {number}")
    assert "待客户签字" in await tech.last_text()
    assert not await tech.cards("signoff")
