"""Rework: 仍未修好 within N days reopens the ticket for the same technician; first-time-fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient

from core.clock import FixedClock
from core.lifecycle.rework import first_time_fix
from core.model import Ticket, TicketStatus
from tests.test_lifecycle_support import Person, clock_client, in_progress, snapshot, ticket  # noqa: F401

S = TicketStatus
GOOD = {"cause_told": "true", "parts_confirmed": "true", "rating": "5"}


async def closed_ticket(client: TestClient, customer: str) -> str:
    number = await in_progress(client, customer, "tech-wang", photos=3)
    await Person(client, "tech-wang").say(f"完工 {number}")
    card = await Person(client, customer).last_card("signoff")
    await Person(client, customer).press(card["id"], "sign", GOOD)
    assert (await ticket(client, number)).status == S.CLOSED
    return number


async def test_still_broken_within_seven_days_reopens_for_the_same_technician(
        clock_client: tuple[TestClient, FixedClock]) -> None:  # noqa: F811
    client, clock = clock_client
    number = await closed_ticket(client, "cust-rework")
    clock.advance(timedelta(days=6, hours=23))
    customer = Person(client, "cust-rework")
    await customer.say("仍未修好 还是有异响")
    t = await ticket(client, number)
    # Same technician first: reopened and offered to tech-wang again (dispatch's OFFER card).
    assert t.status == S.DISPATCHED and t.assignee_id == "tech-wang"
    assert t.data["rework"] == {**t.data["rework"], "count": 1, "preferred_technician": "tech-wang"}
    assert "reopen" in [e["payload"].get("transition") for e in await _audit(client, number)]
    assert "已重开" in "".join(await customer.texts())
    tech = Person(client, "tech-wang")
    assert "返修" in "".join(await tech.texts())
    offer = [c for c in await tech.cards("offer") if c["ticket_number"] == number and c["state"] == "open"]
    await tech.press(offer[-1]["id"], "accept")
    assert (await ticket(client, number)).status == S.ACCEPTED


async def test_still_broken_after_the_window_asks_for_a_new_report(
        clock_client: tuple[TestClient, FixedClock]) -> None:  # noqa: F811
    client, clock = clock_client
    number = await closed_ticket(client, "cust-late")
    clock.advance(timedelta(days=7, minutes=1))
    before = await snapshot(client, number)
    customer = Person(client, "cust-late")
    await customer.say(f"仍未修好 {number}")
    assert "超出返修期" in await customer.last_text()
    assert await snapshot(client, number) == before


async def test_someone_elses_ticket_cannot_be_reopened(app_client: TestClient) -> None:
    number = await closed_ticket(app_client, "cust-owner")
    before = await snapshot(app_client, number)
    other = Person(app_client, "cust-not-owner")
    await other.say(f"仍未修好 {number}")
    assert "没有找到" in await other.last_text()
    assert await snapshot(app_client, number) == before


# --- first-time fix (pure) ---------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def t(number: str, subject: str, category: str, created_day: int, closed_day: int | None,
      status: TicketStatus = S.CLOSED, **data: object) -> Ticket:
    created = T0 + timedelta(days=created_day)
    return Ticket(number=number, customer_id="c1", description="x", status=status, created_at=created,
                  updated_at=created, category=category, subject=subject,
                  closed_at=T0 + timedelta(days=closed_day) if closed_day is not None else None, data=dict(data))


def test_first_time_fix_counts_repeats_on_the_same_asset_and_category() -> None:
    tickets = [
        t("A", "沪A12345", "机械类", 0, 1),  # came back on day 20 → not first-time
        t("B", "沪A12345", "机械类", 20, 21),  # the repeat itself, fixed
        t("C", "沪A12345", "电控类", 5, 6),  # other category: not a repeat of A
        t("D", "沪B99999", "机械类", 2, 3, rework={"count": 1}),  # reopened → not first-time
        t("E", "沪C00001", "机械类", 3, 4),  # back after 31 days: outside the window
        t("F", "沪C00001", "机械类", 35, None, status=S.IN_PROGRESS),
        t("G", "沪D00001", "机械类", 4, None, status=S.CANCELLED),
    ]
    result = first_time_fix(tickets, T0, T0 + timedelta(days=31))
    assert result.closed == 5  # A, B, C, D, E
    assert result.failed == ("A", "D")
    assert result.first_time == 3 and result.rate == 0.6
    assert result.repeats == ("B",)
    assert "60.0%" in result.text()


def test_first_time_fix_of_an_empty_period() -> None:
    result = first_time_fix([], T0, T0 + timedelta(days=30))
    assert result.rate is None and "无结案" in result.text()


def test_without_a_subject_the_customer_is_the_asset() -> None:
    a, b = t("A", "", "机械类", 0, 1), t("B", "", "机械类", 10, 11)
    assert first_time_fix([a, b], T0, T0 + timedelta(days=30)).failed == ("A",)
    b.customer_id = "c2"
    assert first_time_fix([a, b], T0, T0 + timedelta(days=30)).failed == ()


async def test_first_time_fix_is_in_the_report(app_client: TestClient) -> None:
    await closed_ticket(app_client, "cust-report")
    boss = Person(app_client, "sup-li")
    await boss.say("报表")
    assert "一次修复率：100.0%（结案 1 张" in await boss.last_text()


async def _audit(client: TestClient, number: str) -> list[dict]:
    resp = await client.get(f"/api/tickets/{number}")
    return (await resp.json())["audit"]
