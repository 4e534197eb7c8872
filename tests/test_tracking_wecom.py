"""Issue 21 over a real platform door: a WeCom member's ticket, followed to its sign-off, every message the
member receives about it (delivered through the fake WeCom API with WeCom's own wire format) carries the
tracking URL, which opens the page; the member signs on the page."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from core.model import TicketStatus
from tests.test_e2e_wecom import WeComWorld, eventually, fake, world  # noqa: F401
from tests.test_lifecycle_support import Person, accept, png
from tests.test_signoff_page import NONCE, good

S = TicketStatus
NUMBER = re.compile(r"GD-\d{8}-\d{4}")
URL = re.compile(r"查看进度：(http://\S+/t/[A-Za-z0-9_-]+)")


async def test_every_wecom_message_to_the_customer_carries_the_link(world: WeComWorld) -> None:  # noqa: F811
    world.fake.users.add("zhaoliu")
    member = world.member("zhaoliu")
    await member.say("空调不制冷了")
    created = (await eventually(lambda: [t for t in member.texts() if "已为您创建工单" in t], what="the reply"))[0]
    match = NUMBER.search(created)
    assert match
    number = match.group(0)
    url = world.runtime.tracking.url_for(await world.ticket(number))
    assert URL.findall(created) == [url]

    tech = Person(world.client, "tech-wang")
    await accept(world.client, number, "tech-wang")
    await tech.image(png("wecom-checkin"))
    await tech.location(31.2041, 121.5901)
    await tech.say(f"开始 {number}")
    for shot in ("1", "2", "3"):
        await tech.image(png("wecom-" + shot))
    await tech.say(f"完工 {number}")
    await world.settled()
    assert (await world.ticket(number)).status == S.PENDING_SIGNOFF
    await eventually(lambda: member.cards(), what="the sign-off card")

    # Sign on the page the link opens (the member has no other form than WeCom's card).
    path = urlsplit(url).path
    page = await world.client.get(path)
    assert page.status == 200 and number in await page.text()
    sign = await world.client.get(path + "/sign")
    nonce = NONCE.search(await sign.text())
    assert nonce
    resp = await world.client.post(path + "/sign", data=good(nonce.group(1)), allow_redirects=False)
    assert resp.status == 303
    assert (await world.ticket(number)).status == S.CLOSED
    await world.settled()
    await eventually(lambda: [t for t in member.texts() if "已结案" in t], what="the closing message")

    texts = [t for t in member.texts() if number in t]
    assert len(texts) >= 4, texts  # created, accepted, arrived, started, completed (+ sign-off text), closed
    for text in texts:
        assert url in text, text
    assert any("到达" in t for t in texts) and any("已结案" in t for t in texts)
    # WeCom delivers a card as a message of its own: each template card (the sign-off form) carries it too.
    cards = member.cards()
    assert cards
    for card in cards:
        assert url in json.dumps(card, ensure_ascii=False), card
