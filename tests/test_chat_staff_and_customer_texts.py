"""What customers and technicians read along the lifecycle (issue 19, items 14, 18, 19 and 24)."""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient

from core.clock import FixedClock
from core.lifecycle.common import technician_label, technician_name
from core.model import TicketStatus
from tests.test_lifecycle_support import Person, clock_client, in_progress, ticket  # noqa: F401

S = TicketStatus
GOOD = {"cause_told": "true", "parts_confirmed": "true", "rating": "5"}


def test_a_name_that_carries_the_title_is_not_given_it_twice() -> None:
    assert technician_label("技师 黄师傅") == "技师 黄师傅"
    assert technician_label("王强") == "技师 王强"
    assert technician_name("技师 黄师傅") == "黄师傅" and technician_name("王强") == "王强"


async def test_check_in_and_start_name_the_technician_once(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-title", "tech-huang", text="空调不制冷")
    texts = [t for t in await Person(app_client, "cust-title").texts() if number in t]
    assert any("技师 黄师傅 已到达现场签到" in t for t in texts), texts
    assert any("技师 黄师傅 已开始检修" in t for t in texts), texts
    assert not [t for t in texts if "技师 技师" in t]


async def test_the_customers_cards_name_the_technician_under_the_title_once(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-card-title", "tech-huang", text="空调不制冷", photos=3)
    huang = Person(app_client, "tech-huang")
    await huang.say(f"方案 {number} 补充冷媒")
    customer = Person(app_client, "cust-card-title")
    plan = await customer.last_card("task")
    await customer.say("同意方案")
    await huang.say(f"完工 {number}")
    signoff = await customer.last_card("signoff")
    for card in (plan, signoff):
        assert ["技师", "黄师傅"] in card["facts"], card["facts"]


async def plan_card_for(client: TestClient, customer: str, technician: str) -> tuple[str, dict]:  # type: ignore[type-arg]
    number = await in_progress(client, customer, technician)
    await Person(client, technician).say(f"方案 {number} 更换压缩机继电器，约 300 元")
    card = await Person(client, customer).last_card("task")
    assert card["title"] == "请确认维修方案" and card["state"] == "open"
    return number, card


async def test_a_plan_answered_in_text_closes_its_card_as_the_button_would(app_client: TestClient) -> None:
    number, card = await plan_card_for(app_client, "cust-plan-text", "tech-wang")
    customer = Person(app_client, "cust-plan-text")
    await customer.say("同意方案")
    assert (await ticket(app_client, number)).status == S.IN_PROGRESS
    (after,) = [c for c in await customer.cards("task") if c["id"] == card["id"]]
    assert after["state"] != "open" and after["closed_note"] == "您已同意该方案。"
    await customer.press(card["id"], "reject")
    assert await customer.last_text() == "这张卡片已经处理过了。"
    assert (await ticket(app_client, number)).status == S.IN_PROGRESS


async def test_a_plan_rejected_in_text_closes_its_card_too(app_client: TestClient) -> None:
    number, card = await plan_card_for(app_client, "cust-plan-no", "tech-wang")
    customer = Person(app_client, "cust-plan-no")
    await customer.say(f"不同意方案 {number} 太贵了")
    (after,) = [c for c in await customer.cards("task") if c["id"] == card["id"]]
    assert after["state"] != "open" and after["closed_note"] == "您已不同意该方案。"


async def test_the_sign_off_card_closes_when_the_customer_types_still_broken(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-sb-text", "tech-wang", photos=3)
    await Person(app_client, "tech-wang").say(f"完工 {number}")
    customer = Person(app_client, "cust-sb-text")
    card = await customer.last_card("signoff")
    await customer.say("仍未修好 还是响")
    assert (await ticket(app_client, number)).status == S.IN_PROGRESS
    (after,) = [c for c in await customer.cards("signoff") if c["id"] == card["id"]]
    assert after["state"] != "open" and "仍未修好" in after["closed_note"]


async def test_the_signed_card_shows_the_customer_no_internal_timing(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-signed", "tech-wang", photos=3)
    await Person(app_client, "tech-wang").say(f"完工 {number}")
    customer = Person(app_client, "cust-signed")
    card = await customer.last_card("signoff")
    await customer.press(card["id"], "sign", GOOD)
    (after,) = [c for c in await customer.cards("signoff") if c["id"] == card["id"]]
    assert after["closed_note"] == "已签字 · 评分 5 分"
    assert "用时" not in after["closed_note"] and "秒" not in after["closed_note"]
    signed = (await ticket(app_client, number)).data["signoff"]["signed"]
    assert signed["seconds_to_sign"] >= 0  # the measure stays in the record for the reports


async def test_rework_goes_back_to_the_technician_who_did_it_and_says_so(
        clock_client: tuple[TestClient, FixedClock]) -> None:  # noqa: F811
    client, clock = clock_client
    number = await in_progress(client, "cust-rework-text", "tech-wang", photos=3)
    await Person(client, "tech-wang").say(f"完工 {number}")
    customer = Person(client, "cust-rework-text")
    await customer.press((await customer.last_card("signoff"))["id"], "sign", GOOD)
    clock.advance(timedelta(days=2))
    seen = len(await customer.texts())
    await customer.say("仍未修好 还是有异响")
    t = await ticket(client, number)
    assert t.status == S.DISPATCHED and t.assignee_id == "tech-wang"
    offer = [c for c in await Person(client, "tech-wang").cards("offer")
             if c["ticket_number"] == number and c["state"] == "open"][-1]
    assert "主管转派" not in offer["body"] and "人工指定" not in offer["body"]
    assert "返修" in offer["body"] and "您上次检修" in offer["body"]
    told = (await customer.texts())[seen:]
    assert not [m for m in told if "改派" in m], told
    assert any("退回给上次检修的技师 王师傅" in m and "返修" in m for m in told), told
