"""The customer's pages in a real browser at 390×844 (headless Chromium through Playwright, a real
`ticketbot serve`): a ticket reported on the store page /r/S01 (helper C's; through the playground API when
a build has none), followed on the tracking page through accept and arrival with live updates and no
reload, signed on the sign-off page with a signature drawn by mouse moves, seen closed. Screenshots of each
page at 390 and 1440 px; the bytes each first load transfers are summed and printed (≤ 150 KB)."""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

from tests.browser_support import PHONE, PlaygroundApi, screenshot_both_widths

NUMBER = re.compile(r"GD-\d{8}-\d{4}")
LINK = re.compile(r"查看进度：(http://\S+/t/[A-Za-z0-9_-]+)")
FIRST_LOAD_BUDGET = 150 * 1024


Api = PlaygroundApi


class Transfers:
    """Bytes on the wire per response (headers + encoded body), as Chromium reports them."""

    def __init__(self, page: Any) -> None:
        self.items: list[tuple[str, int]] = []
        page.on("requestfinished", self._finished)

    def _finished(self, request: Any) -> None:
        sizes = request.sizes()
        self.items.append((request.url, sizes["responseBodySize"] + sizes["responseHeadersSize"]))

    def total(self) -> int:
        return sum(size for url, size in self.items if not url.endswith("/events") and "/events?" not in url)

    def reset(self) -> None:
        self.items.clear()


def new_phone(browser: Any, **options: Any) -> Any:
    return browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                               locale="zh-CN", **options)


def first_load(browser: Any, url: str, *, ready: str) -> int:
    """Bytes a phone with an empty cache transfers to show `url` (its map and scripts included)."""
    context = new_phone(browser)
    try:
        page = context.new_page()
        transfers = Transfers(page)
        page.goto(url, wait_until="load")
        page.wait_for_selector(ready)
        page.wait_for_load_state("load")
        page.wait_for_timeout(500)
        return transfers.total()
    finally:
        context.close()


def report_on_the_store_page(browser: Any, served: str, tmp_path: Path) -> tuple[str, str] | None:
    """Report at the store's page /r/S01 (helper C's) as a phone with its position; (number, tracking URL),
    or None when this build has no store page."""
    try:
        with urllib.request.urlopen(served + "/r/S01", timeout=10) as resp:
            if resp.status != 200 or b'id="report-form"' not in resp.read():
                return None
    except OSError:
        return None
    context = new_phone(browser, geolocation={"latitude": 31.2304, "longitude": 121.4737},
                        permissions=["geolocation"])
    try:
        page = context.new_page()
        page.goto(served + "/r/S01")
        page.fill("#phone", "13800138000")
        page.fill("#description", "空调不制冷了，出风口是热风")
        if page.locator("#locate").is_visible():
            page.click("#locate")
            page.wait_for_function("document.getElementById('lat').value !== ''")
        page.click("#submit-report")
        page.wait_for_selector("#tracking-link")
        return page.inner_text("#ticket-number"), str(page.get_attribute("#tracking-link", "href"))
    finally:
        context.close()


def report_in_the_chat(api: Api, customer: str) -> tuple[str, str]:
    api.say(customer, text="空调不制冷了，出风口是热风")
    api.say(customer, location={"lat": 31.2304, "lng": 121.4737})
    texts = [m.get("text") or "" for m in api.messages(customer)]
    number = NUMBER.search(" ".join(texts)).group(0)  # type: ignore[union-attr]
    links = {u for t in texts for u in LINK.findall(t)}
    assert len(links) == 1, texts
    return number, links.pop()


def customer_messages(tmp_path: Path, customer_id: str) -> list[dict[str, Any]]:
    """What the service queued for the customer, on whatever channel (read from its database)."""
    with sqlite3.connect(tmp_path / "tb.db") as db:
        rows = db.execute("SELECT payload FROM outbox WHERE recipient_id = ? ORDER BY id", (customer_id,)).fetchall()
    return [json.loads(payload) for (payload,) in rows]


def test_customer_follows_and_signs_a_ticket_on_the_phone(served: str, browser: Any, tmp_path: Path) -> None:
    api = Api(served)
    reported_at_store = report_on_the_store_page(browser, served, tmp_path)
    number, url = reported_at_store or report_in_the_chat(api, "cust-browser")
    print(f"\nreported {'on the store page /r/S01' if reported_at_store else 'through the playground API'}")
    assert url.startswith(served + "/t/") and number not in url

    reported = first_load(browser, url, ready="#map .leaflet-interactive")  # the site's marker, with no tiles
    context = new_phone(browser)
    page = context.new_page()
    page.goto(url)
    assert page.locator(".steps li.current").inner_text() == "安排技师"
    page.wait_for_selector("#map .leaflet-interactive")
    screenshot_both_widths(page, tmp_path, "customer-tracking-reported")

    # Accept and arrival, live: the page never reloads (a marker set on the window survives).
    page.evaluate("window.__notReloaded = true")
    api.say("sup-li", text=f"转派 {number} tech-wang 测试指定")
    offer = [c for c in api.cards("tech-wang", "offer") if c["ticket_number"] == number and c["state"] == "open"][-1]
    api.call("POST", "/playground/api/actions",
             {"user": "tech-wang", "card_id": offer["id"], "action": "accept", "values": {}})
    page.wait_for_selector("text=王师傅已接单", timeout=15_000)
    assert page.locator(".steps li.current").inner_text() == "技师已接单"
    api.image("tech-wang", 11)
    api.say("tech-wang", location={"lat": 31.2330, "lng": 121.4760})
    page.wait_for_selector("text=/王师傅已于\\d\\d:\\d\\d到达现场/", timeout=15_000)
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator(".steps li.current").inner_text() == "技师已到达"
    page.wait_for_function("document.querySelectorAll('#map .leaflet-interactive').length >= 2")
    assert "签到位置距现场约" in page.inner_text("body")
    assert page.locator(".photos img").count() == 1
    screenshot_both_widths(page, tmp_path, "customer-tracking-arrived")
    arrived_load = first_load(browser, url, ready=".photos img")

    # Work and 完工: the page offers the sign-off.
    api.say("tech-wang", text=f"开始 {number}")
    for seed in (12, 13, 14):
        api.image("tech-wang", seed)
    api.say("tech-wang", text=f"完工 {number}")
    page.wait_for_selector("text=去确认并签字", timeout=15_000)
    screenshot_both_widths(page, tmp_path, "customer-tracking-signoff")

    page.click("text=去确认并签字")
    page.wait_for_selector("#pad")
    sign_load = first_load(browser, url + "/sign", ready="#pad")
    page.wait_for_function("window.SignaturePad !== undefined")
    screenshot_both_widths(page, tmp_path, "customer-sign-empty")
    page.check("input[name=cause_told]")
    page.check("input[name=parts_confirmed]")
    page.click("text=5 分")
    page.fill("#comment", "师傅很专业")
    box = page.locator("#pad").bounding_box()
    assert box is not None
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + w * 0.1, y + h * 0.7)
    page.mouse.down()
    for i in range(1, 25):
        page.mouse.move(x + w * (0.1 + 0.8 * i / 24), y + h * (0.5 + 0.3 * ((-1) ** i) * (i % 5) / 5), steps=2)
    page.mouse.up()
    assert page.evaluate("!document.getElementById('hint') || document.getElementById('hint').hidden")
    screenshot_both_widths(page, tmp_path, "customer-sign-drawn")
    page.click("#submit")
    page.wait_for_url(url, timeout=15_000)
    page.wait_for_selector("text=已结案")
    assert page.locator(".steps li.done").count() == page.locator(".steps li").count()
    assert "签字确认完工，评分 5 分" in page.inner_text("body")
    screenshot_both_widths(page, tmp_path, "customer-tracking-closed")
    page.goto(url + "/sign")
    assert "您已签字确认" in page.inner_text("body")
    screenshot_both_widths(page, tmp_path, "customer-sign-done")

    detail = api.call("GET", f"/api/tickets/{number}")
    assert detail["status"] == "closed"
    signed = detail["data"]["signoff"]["signed"]
    assert signed["rating"] == 5 and signed["comment"] == "师傅很专业" and len(signed["signature_image"]) == 64
    # Every message the customer got about the ticket carries the link (the same one), on any channel.
    about = [m for m in customer_messages(tmp_path, detail["customer_id"]) if m.get("ticket_number") == number]
    assert len(about) >= 5, about
    for message in about:  # in the text, or (a card alone, e.g. the used sign-off card) in the card's body
        shown = (message.get("text") or "") + ((message.get("card") or {}).get("body") or "")
        assert f"查看进度：{url}" in shown and message["extra"]["tracking_url"] == url, message

    # A forged link shows nothing.
    page.goto(url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB"))
    assert "链接无效" in page.inner_text("body") and number not in page.content()
    screenshot_both_widths(page, tmp_path, "customer-tracking-invalid")
    context.close()

    print(f"\nfirst load at 390x844, empty cache (bytes on the wire): tracking page with its map (Leaflet) "
          f"{reported} B; after arrival (map, photo thumbnail) {arrived_load} B; sign-off page {sign_load} B")
    for figure in (reported, arrived_load, sign_load):
        assert figure <= FIRST_LOAD_BUDGET, figure
