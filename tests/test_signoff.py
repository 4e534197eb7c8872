"""Customer sign-off: validated on the server, the only way to 已结案, timed, with a callback."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient

from core.clock import FixedClock
from core.commands import Transition
from core.errors import IllegalTransition, NotAllowed
from core.lifecycle.signoff import validate_signature
from core.model import TicketStatus
from core.service import SYSTEM_ACTOR
from tests.conftest import runtime_of
from tests.test_lifecycle_support import Person, clock_client, in_progress, snapshot, ticket  # noqa: F401

S = TicketStatus
GOOD = {"cause_told": "true", "parts_confirmed": "true", "rating": "4"}


async def pending_signoff(client: TestClient, customer: str) -> tuple[str, dict]:
    number = await in_progress(client, customer, "tech-wang", photos=3)
    await Person(client, "tech-wang").say(f"完工 {number}")
    assert (await ticket(client, number)).status == S.PENDING_SIGNOFF
    return number, await Person(client, customer).last_card("signoff")


@pytest.mark.parametrize("values, message", [
    ({"parts_confirmed": "true", "rating": "5"}, "已告知故障原因"),
    ({"cause_told": "false", "parts_confirmed": "true", "rating": "5"}, "已告知故障原因"),
    ({"cause_told": "true", "parts_confirmed": "", "rating": "5"}, "配件更换已确认"),
    ({"cause_told": "true", "parts_confirmed": "true", "rating": "请选择"}, "1–5"),
    ({"cause_told": "true", "parts_confirmed": "true"}, "1–5"),
    ({"cause_told": "true", "parts_confirmed": "true", "rating": "0"}, "1–5"),
    ({"cause_told": "true", "parts_confirmed": "true", "rating": "6"}, "1–5"),
])
def test_signature_validation_messages(values: dict[str, str], message: str) -> None:
    from core.errors import InvalidInput

    with pytest.raises(InvalidInput, match=message):
        validate_signature(values)


def test_a_complete_signature_passes() -> None:
    assert validate_signature(GOOD) == ({"cause_told": True, "parts_confirmed": True}, 4)


async def test_incomplete_signature_keeps_the_card_open_and_changes_nothing(app_client: TestClient) -> None:
    number, card = await pending_signoff(app_client, "cust-sign-bad")
    customer = Person(app_client, "cust-sign-bad")
    before = await snapshot(app_client, number)
    for values in ({"cause_told": "true", "rating": "5"}, {**GOOD, "rating": "0"}, {**GOOD, "rating": "6"},
                   {**GOOD, "rating": "请选择"}, {**GOOD, "cause_told": "false"}):
        await customer.press(card["id"], "sign", values)
        assert "请" in await customer.last_text()
        assert await snapshot(app_client, number) == before
    assert (await customer.last_card("signoff"))["state"] == "open"
    await customer.press(card["id"], "sign", GOOD)
    assert (await ticket(app_client, number)).status == S.CLOSED


async def test_signoff_by_someone_else_is_refused(app_client: TestClient) -> None:
    number, card = await pending_signoff(app_client, "cust-sign-other")
    before = await snapshot(app_client, number)
    for intruder in ("cust-intruder", "tech-wang", "admin"):
        user = Person(app_client, intruder)
        await user.press(card["id"], "sign", GOOD)
        assert "不是发给您的" in await user.last_text()
    assert await snapshot(app_client, number) == before


async def test_second_signoff_is_refused(app_client: TestClient) -> None:
    number, card = await pending_signoff(app_client, "cust-sign-twice")
    customer = Person(app_client, "cust-sign-twice")
    await customer.press(card["id"], "sign", GOOD)
    closed = await snapshot(app_client, number)
    await customer.press(card["id"], "sign", {**GOOD, "rating": "1"})
    assert "已经处理过" in await customer.last_text()
    assert await snapshot(app_client, number) == closed
    assert (await ticket(app_client, number)).data["signoff"]["signed"]["rating"] == 4


async def test_no_path_closes_without_the_signature(app_client: TestClient) -> None:
    """Generic Transition by the customer, an admin, the system; the bot; the HTTP API."""
    runtime = runtime_of(app_client)
    number, _card = await pending_signoff(app_client, "cust-no-path")
    before = await snapshot(app_client, number)
    async with runtime.uow() as uow:
        customer, admin, supervisor = [await uow.get_person(p) for p in ("cust-no-path", "admin", "sup-li")]
    with pytest.raises(NotAllowed, match="没有客户的有效签字"):
        await runtime.service.handle(Transition(number, "sign_off"), customer)  # type: ignore[arg-type]
    for staff in (admin, supervisor):
        with pytest.raises(NotAllowed):
            await runtime.service.handle(Transition(number, "sign_off"), staff)  # type: ignore[arg-type]
    with pytest.raises(NotAllowed):  # the system actor skips role checks, not guards
        await runtime.service.handle(Transition(number, "sign_off"), SYSTEM_ACTOR)
    with pytest.raises(IllegalTransition):
        await runtime.service.handle(Transition(number, "force_close"), admin)  # type: ignore[arg-type]
    # The bot: words that sound like closing do not close.
    for text in ("确认签字", "结案", f"结案 {number}", "签字"):
        await Person(app_client, "cust-no-path").say(text)
        await Person(app_client, "admin").say(text)
    # The API has no write path.
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        resp = await app_client.request(method, f"/api/tickets/{number}", json={"status": "closed"})
        assert resp.status in {404, 405}, method
    assert await snapshot(app_client, number) == before


async def test_still_broken_on_the_card_sends_it_back_to_work(app_client: TestClient) -> None:
    number, card = await pending_signoff(app_client, "cust-not-fixed")
    customer, tech = Person(app_client, "cust-not-fixed"), Person(app_client, "tech-wang")
    await customer.press(card["id"], "not_fixed")
    again = await ticket(app_client, number)
    assert again.status == S.IN_PROGRESS and again.data["rework"]["not_fixed_at_signoff"] == 1
    assert "仍未修好" in "".join(await tech.texts())
    # A new round needs new photos: the three old ones do not count.
    await tech.say(f"完工 {number}")
    assert "至少 3 张" in await tech.last_text()


async def test_unsigned_after_45_seconds_creates_a_callback_task(
        clock_client: tuple[TestClient, FixedClock]) -> None:  # noqa: F811
    client, clock = clock_client
    runtime = runtime_of(client)
    number, card = await pending_signoff(client, "cust-slow")
    supervisor = Person(client, "sup-li")
    clock.advance(timedelta(seconds=44))
    await runtime.timer_engine.fire_due()
    assert not [c for c in await supervisor.cards("task") if "回访" in c["title"]]
    clock.advance(timedelta(seconds=2))
    await runtime.timer_engine.fire_due()
    tasks = [c for c in await supervisor.cards("task") if "回访" in c["title"]]
    assert len(tasks) == 1 and number in tasks[0]["title"]
    assert "signoff_callback_created" in [e for e in await _kinds(client, number)]
    # The signature still works afterwards; the time to sign is recorded.
    clock.advance(timedelta(seconds=10))
    await Person(client, "cust-slow").press(card["id"], "sign", GOOD)
    signed = (await ticket(client, number)).data["signoff"]["signed"]
    assert signed["seconds_to_sign"] == 56


async def test_signed_in_time_means_no_callback(clock_client: tuple[TestClient, FixedClock]) -> None:  # noqa: F811
    client, clock = clock_client
    runtime = runtime_of(client)
    number, card = await pending_signoff(client, "cust-quick")
    clock.advance(timedelta(seconds=20))
    await Person(client, "cust-quick").press(card["id"], "sign", GOOD)
    assert (await ticket(client, number)).data["signoff"]["signed"]["seconds_to_sign"] == 20
    clock.advance(timedelta(minutes=5))
    await runtime.timer_engine.fire_due()
    assert not [c for c in await Person(client, "sup-li").cards("task") if "回访" in c["title"]]


async def _kinds(client: TestClient, number: str) -> list[str]:
    async with runtime_of(client).uow() as uow:
        return [e.kind for e in await uow.audit_for_ticket(number)]
