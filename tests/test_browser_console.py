"""The staff console in a real browser (issue 22): a supervisor signs in from a chat link, finds a breached
ticket through the filters, opens its file and sees its photos; a signed ticket's file shows the handwritten
signature and both confirmations; a supervisor of another store gets 403. Screenshots of every page at
390 and 1440 px (test-artifacts/screenshots/console-*.png)."""

from __future__ import annotations

import asyncio
import base64
import io
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from bot.signature_store import SignatureStore
from tests.browser_support import DESKTOP, png, screenshot_both_widths, serve
from tests.console_support import chat_signin_url
from tests.test_browser_playground import NUMBER, Api


def handwriting() -> str:
    image = Image.new("RGBA", (600, 240), (255, 255, 255, 0))
    draw = ImageDraw.Draw(image)
    draw.line([(40, 160), (160, 60), (260, 180), (380, 70), (540, 150)], fill=(0, 0, 0, 255), width=6)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def in_progress_with_photos(api: Api, customer: str) -> str:
    api.say(customer, text="底盘有异响，刹车发软")
    match = NUMBER.search(" ".join(m.get("text") or "" for m in api.messages(customer)))
    assert match
    number = match.group(0)
    api.say("sup-li", text=f"转派 {number} tech-zhang 测试指定")
    offers = [c for c in api.cards("tech-zhang", "offer") if c["ticket_number"] == number and c["state"] == "open"]
    assert offers
    api.call("POST", "/playground/api/actions",
             {"user": "tech-zhang", "card_id": offers[-1]["id"], "action": "accept", "values": {}})
    api.say("tech-zhang", location={"lat": 31.171, "lng": 121.398})
    api.say("tech-zhang", image=base64.b64encode(png(11)).decode())
    api.say("tech-zhang", text=f"开始 {number}")
    for seed in (12, 13):
        api.say("tech-zhang", image=base64.b64encode(png(seed)).decode())
    return number


def set_store_and_due(db: Path, number: str, store: str, *, overdue: bool = False) -> None:
    with sqlite3.connect(db, timeout=10) as conn:
        conn.execute("UPDATE tickets SET store_id = ? WHERE number = ?", (store, number))
        if overdue:
            past = (datetime.now(UTC) - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S.%f")
            conn.execute("UPDATE tickets SET resolution_due = ? WHERE number = ?", (past, number))


def images_loaded(page: Any, selector: str) -> list[int]:
    page.wait_for_function(f"Array.from(document.querySelectorAll('{selector}')).every(i => i.complete)")
    return list(page.eval_on_selector_all(selector, "els => els.map(e => e.naturalWidth)"))


def test_console_in_the_browser(browser: Any, tmp_path: Path) -> None:
    with serve(tmp_path) as base:
        api = Api(base)
        db = tmp_path / "tb.db"
        breached = in_progress_with_photos(api, "cust-console-1")
        set_store_and_due(db, breached, "S01", overdue=True)
        signed = api.ticket_awaiting_signature("cust-console-2")
        set_store_and_due(db, signed, "S01")
        # As the sign-off page stores it (bot/signature_store.py), then the card's own submission with its hash.
        store = SignatureStore(tmp_path / "data")
        with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
            stored = pool.submit(asyncio.run, store.store(handwriting(), number=signed,
                                                          signed_at=datetime.now(UTC))).result()
        card = api.cards("cust-console-2", "signoff")[-1]
        api.call("POST", "/playground/api/actions", {
            "user": "cust-console-2", "card_id": card["id"], "action": "sign",
            "values": {"cause_told": "true", "parts_confirmed": "true", "rating": "5",
                       "signature_sha256": stored.sha256}})

        # Without a session: the sign-in explanation.
        context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
        page = context.new_page()
        page.goto(base + "/console/")
        assert page.url.endswith("/console/signin")
        assert "发送「后台」" in page.content()
        screenshot_both_widths(page, tmp_path, "console-signin")

        # 后台 in the chat → a one-time link → signed in on the queue.
        url = chat_signin_url(base, "sup-li")
        page.goto(url)
        assert page.url == base + "/console/"
        assert "主管 李强" in page.inner_text("header")
        screenshot_both_widths(page, tmp_path, "console-queue")

        # Find the breached ticket with the filters (the form, as a person uses it).
        page.click("summary:has-text('筛选')")
        page.select_option("select[name=sla]", "breached")
        page.click("button:has-text('筛选')")
        page.wait_for_url("**/console/?*sla=breached*")
        rows = page.inner_text("table.tickets:not(.urgent) tbody")
        assert breached in rows and signed not in rows
        assert "已超时" in rows
        screenshot_both_widths(page, tmp_path, "console-queue-breached")

        # Its file: the photos as images, the offers, the check-in map.
        page.click(f"table.tickets:not(.urgent) a:has-text('{breached}')")
        page.wait_for_url(f"**/console/tickets/{breached}")
        widths = images_loaded(page, ".photos img")
        assert len(widths) == 3 and all(w == 320 for w in widths), widths
        assert "资质匹配" in page.content() and "审计记录完整" in page.content()
        page.wait_for_selector("#checkin-map.leaflet-container")
        screenshot_both_widths(page, tmp_path, "console-ticket-breached")

        # The signed ticket, found by its number: the signature image, both confirmations, the rating.
        page.goto(base + "/console/")
        page.click("summary:has-text('筛选')")
        page.fill("input[name=q]", signed)
        page.click("button:has-text('筛选')")
        page.wait_for_url(f"**/console/tickets/{signed}")
        assert images_loaded(page, ".signature img")[0] > 0
        signoff = page.inner_text("section[aria-labelledby=sign-h]")
        assert "已告知故障原因" in signoff and "配件更换已确认" in signoff and "✓ 已勾选" in signoff
        assert "（5 分）" in signoff
        assert len(images_loaded(page, ".photos img")) == 4
        screenshot_both_widths(page, tmp_path, "console-ticket-signed")

        # A word of a description: a text search reads off the event loop, in the report worker
        # (bot/console/queue_reads.py); the page shows the same rows as before.
        page.goto(base + "/console/")
        page.click("summary:has-text('筛选')")
        page.fill("input[name=q]", "刹车发软")
        page.click("button:has-text('筛选')")
        page.wait_for_url("**/console/?*q=*")
        rows = page.inner_text("table.tickets:not(.urgent) tbody")
        assert breached in rows and signed not in rows
        screenshot_both_widths(page, tmp_path, "console-queue-search")

        # A used link opens nothing.
        other = browser.new_context(viewport=DESKTOP, locale="zh-CN").new_page()
        other.goto(url)
        assert "已经用过" in other.content()
        assert "/console/signin" in other.url
        screenshot_both_widths(other, tmp_path, "console-signin-used")

        # The supervisor of S03 cannot open S01's ticket, nor its photos.
        chen = browser.new_context(viewport=DESKTOP, locale="zh-CN").new_page()
        chen.goto(chat_signin_url(base, "sup-chen"))
        assert chen.url == base + "/console/"
        assert breached not in chen.content() and signed not in chen.content()
        response = chen.goto(f"{base}/console/tickets/{signed}")
        assert response is not None and response.status == 403
        assert "无权访问" in chen.content()
        screenshot_both_widths(chen, tmp_path, "console-forbidden")
        photo = chen.request.get(f"{base}/console/tickets/{signed}/signature")
        assert photo.status == 403
        context.close()
