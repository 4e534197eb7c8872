"""Issue 21: the tracking page `/t/{token}` — status bar of the template's steps, the trail in customer words,
photos only through the token, the technician's arrival, map markers with distances in text, live updates
over server-sent events, gzip, and nothing for a token that does not open a ticket."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from core.model import TicketStatus
from tests.conftest import runtime_of
from tests.test_lifecycle_support import Person, accept, png, report, ticket

S = TicketStatus
POINTS = re.compile(r'<script type="application/json" id="points">(.*?)</script>', re.S)


async def page_path(client: TestClient, number: str) -> str:
    return urlsplit(runtime_of(client).tracking.url_for(await ticket(client, number))).path


def steps_of(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<li class="(done|current|todo)"[^>]*><span class="dot"></span>([^<]+)</li>', html)


async def test_the_page_follows_the_ticket_in_customer_words(app_client: TestClient) -> None:
    client = app_client
    customer, tech = Person(client, "cust-page"), Person(client, "tech-wang")
    number = await report(client, "cust-page", "空调不制冷了")
    await customer.location(31.2, 121.5)
    path = await page_path(client, number)
    first = await (await client.get(path)).text()
    assert number in first and "提交了报修：空调不制冷了" in first and "发送了现场位置" in first
    assert steps_of(first)[0] == ("done", "已受理") and ("current", "安排技师") in steps_of(first)
    assert [label for _s, label in steps_of(first)] == ["已受理", "安排技师", "技师已接单", "技师已到达", "维修中",
                                                       "待您签字", "已完成"]

    await accept(client, number, "tech-wang")
    accepted = await (await client.get(path)).text()
    assert ("current", "技师已接单") in steps_of(accepted) and "技师 王师傅已接单，正在赶来" in accepted

    checkin = png("page-checkin")
    await tech.image(checkin)
    await tech.location(31.2041, 121.5901)
    arrived = await (await client.get(path)).text()
    assert re.search(r"技师 王师傅已于\d\d:\d\d到达现场", arrived), arrived
    assert ("current", "技师已到达") in steps_of(arrived)
    digest = hashlib.sha256(checkin).hexdigest()
    assert f"{path}/photos/{digest}?thumb=1" in arrived
    points = json.loads(POINTS.search(arrived).group(1))  # type: ignore[union-attr]
    assert {p["kind"] for p in points} >= {"site", "technician"}
    assert "签到位置距现场约" in arrived  # the distance in words: readable with no map tiles, no script

    # Photos only through the token: the thumbnail is a small JPEG, the original is the bytes as sent.
    thumb = await client.get(f"{path}/photos/{digest}?thumb=1")
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert (await thumb.read())[:2] == b"\xff\xd8"
    full = await client.get(f"{path}/photos/{digest}")
    assert full.status == 200 and await full.read() == checkin and full.headers["Content-Type"] == "image/png"
    other = await report(client, "cust-page-other")
    other_path = await page_path(client, other)
    assert (await client.get(f"{other_path}/photos/{digest}")).status == 404  # not that ticket's photo
    assert (await client.get(f"{path}/photos/{'0' * 64}")).status == 404
    assert (await client.get(f"{path}/photos/..%2F..%2Faudit.key")).status == 404

    await tech.say(f"开始 {number}")
    working = await (await client.get(path)).text()
    assert "开始检修" in working and ("current", "维修中") in steps_of(working)
    # Internal facts never reach the page.
    for internal in ("sla", "offer", "黄师傅", "评分 ", "card_action"):
        assert internal not in working.split("<main>")[1], internal


async def test_the_page_is_readable_without_javascript_and_small(app_client: TestClient) -> None:
    client = app_client
    number = await report(client, "cust-small")
    path = await page_path(client, number)
    resp = await client.get(path, headers={"Accept-Encoding": "gzip"})
    assert resp.status == 200 and resp.headers.get("Content-Encoding") == "gzip"
    assert "no-store" in resp.headers["Cache-Control"] and resp.headers["Referrer-Policy"] == "no-referrer"
    html = await resp.text()
    raw = html.encode()
    assert len(gzip.compress(raw)) < 8_000, len(gzip.compress(raw))
    # No script needed to read it: the status, the steps and the trail are in the HTML.
    assert "当前状态" in html and "进展记录" in html and "提交了报修" in html
    assert '<script src=' not in html  # Leaflet is loaded by the page's script only when there is a map


def test_vendored_files_have_identical_gzip_siblings() -> None:
    """aiohttp serves `<file>.gz` to clients that accept gzip: each must be exactly its file, compressed."""
    vendor = Path(str(resources.files("bot.web").joinpath("static"))) / "vendor"
    for name in ("leaflet/leaflet.js", "leaflet/leaflet.css", "signature_pad/signature_pad.umd.min.js"):
        source = vendor / name
        assert gzip.decompress((vendor / f"{name}.gz").read_bytes()) == source.read_bytes(), name


async def test_static_vendored_files_are_sent_compressed(app_client: TestClient) -> None:
    resp = await app_client.get("/static/vendor/leaflet/leaflet.js", headers={"Accept-Encoding": "gzip"},
                                auto_decompress=False)
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
    assert "javascript" in resp.headers["Content-Type"]
    assert int(resp.headers["Content-Length"]) < 50_000
    plain = await app_client.get("/static/vendor/leaflet/leaflet.js", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and len(await plain.read()) > 140_000


async def test_live_updates_arrive_as_server_sent_events(app_client: TestClient) -> None:
    client = app_client
    number = await report(client, "cust-live")
    path = await page_path(client, number)
    html = await (await client.get(path)).text()
    version = re.search(r'data-version="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    stream = await client.get(f"{path}/events", params={"v": version})
    assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")

    async def next_event() -> tuple[str, str]:
        event, data = "", []
        while True:
            line = (await asyncio.wait_for(stream.content.readline(), 20)).decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].removeprefix(" "))
            elif not line and event:
                return event, "\n".join(data)

    await accept(client, number, "tech-wang")
    event, data = await next_event()
    assert event == "update" and "技师 王师傅已接单" in data and "<ol class=\"steps\">" in data
    # Revoked: the stream says so and ends; the page is gone.
    await Person(client, "sup-li").say(f"链接 作废 {number}")
    while True:
        event, data = await next_event()
        if event == "gone":
            break
    stream.close()
    assert (await client.get(path)).status == 404


@pytest.mark.parametrize("token", ["x", "A" * 44, "A" * 500, "%E4%BD%A0%E5%A5%BD", "GD-20261207-0001"])
async def test_bad_tokens_answer_404_revealing_nothing(app_client: TestClient, token: str) -> None:
    number = await report(app_client, "cust-404")
    for suffix in ("", "/sign", "/events", f"/photos/{'a' * 64}"):
        resp = await app_client.get(f"/t/{token}{suffix}")
        assert resp.status == 404, suffix
        text = await resp.text()
        assert number not in text and "GD-" not in text and "链接无效" in text


async def test_on_the_way_the_page_estimates_the_arrival(app_client: TestClient) -> None:
    client = app_client
    customer, tech = Person(client, "cust-eta"), Person(client, "tech-wang")
    number = await report(client, "cust-eta", "空调不制冷了")
    await customer.location(31.2304, 121.4737)
    await accept(client, number, "tech-wang")
    await tech.location(31.2041, 121.5901)  # on the way: a position, no check-in photo yet
    assert (await ticket(client, number)).status == S.ACCEPTED
    html = await (await client.get(await page_path(client, number))).text()
    match = re.search(r"技师 王师傅已接单，正在赶来，距现场约 ([\d.]+) 公里，预计 \d\d:\d\d 左右到达", html)
    assert match and 10 < float(match.group(1)) < 13, html
    points = json.loads(POINTS.search(html).group(1))  # type: ignore[union-attr]
    assert {p["kind"] for p in points} == {"site", "technician"}
