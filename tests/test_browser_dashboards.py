"""The dashboards in a real browser (issue 22): a supervisor and an admin signed in from a chat link see
every chart drawn by ECharts (a canvas each, no console error) with its table view beside it, the
filters work, and a store outside the supervisor's scope is refused. Screenshots at 390 and 1440 px
(test-artifacts/screenshots/dashboards-*.png)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.signature_store import SignatureStore
from tests.browser_support import DESKTOP, screenshot_both_widths, serve
from tests.console_support import chat_signin_url
from tests.test_browser_console import handwriting, in_progress_with_photos
from tests.test_browser_playground import Api

CHARTS = ("waits", "trend", "sla", "backlog", "blocked", "technicians", "stores", "photos")


def signed_ticket(api: Api, tmp_path: Path, customer: str) -> str:
    number = api.ticket_awaiting_signature(customer)
    store = SignatureStore(tmp_path / "data")
    with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
        stored = pool.submit(asyncio.run, store.store(handwriting(), number=number,
                                                      signed_at=datetime.now(UTC))).result()
    card = api.cards(customer, "signoff")[-1]
    api.call("POST", "/playground/api/actions", {
        "user": customer, "card_id": card["id"], "action": "sign",
        "values": {"cause_told": "true", "parts_confirmed": "true", "rating": "4", "signature_sha256": stored.sha256}})
    return number


def open_ready(page: Any, url: str) -> None:
    """The page, once the background fold has its first figures (a few seconds after start)."""
    deadline = time.monotonic() + 60
    while True:
        page.goto(url)
        if "统计数据正在首次生成" not in page.content() or time.monotonic() > deadline:
            return
        time.sleep(1)


def test_dashboards_in_the_browser(browser: Any, tmp_path: Path) -> None:
    with serve(tmp_path) as base:
        api = Api(base)
        in_progress_with_photos(api, "cust-dash-1")
        signed = signed_ticket(api, tmp_path, "cust-dash-2")

        context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(chat_signin_url(base, "admin"))
        open_ready(page, base + "/console/dashboards")
        assert "看板" in page.inner_text("nav")
        for chart in CHARTS:  # drawn by ECharts: a canvas in each chart's box
            page.wait_for_selector(f"#chart-{chart}[data-rendered='1'] canvas", timeout=15_000)
        assert page.locator("details.table-view").count() == len(CHARTS)
        assert page.locator("details.table-view table").count() >= len(CHARTS)
        assert page.get_attribute("#chart-waits", "role") == "img"
        kpis = page.inner_text(".kpis")
        assert "报修" in kpis and "过程可追溯率" in kpis and "一次修复率" in kpis
        # The heat map draws the store map, stores without a ticket in the period too (was empty when
        # the period's tickets had no located store).
        points = page.evaluate("JSON.parse(document.getElementById('dash-charts').textContent)"
                               ".stores.series[0].data.length")
        assert points >= 2, points
        page.click("#chart-blocked ~ details summary")  # the table view opens on demand
        assert page.is_visible("#chart-blocked ~ details table")
        assert not errors, errors
        screenshot_both_widths(page, tmp_path, "dashboards-admin")

        # The filters, as a person uses them: one technician.
        page.select_option("select[name=technician]", "tech-zhang")
        page.click("button:has-text('查看')")
        page.wait_for_url("**/console/dashboards?*technician=tech-zhang*")
        page.wait_for_selector("#chart-technicians[data-rendered='1'] canvas")
        assert "技师 张师傅" in (page.text_content("#chart-technicians ~ details") or "")
        assert signed not in page.content()  # tech-zhang did not do the signed one
        screenshot_both_widths(page, tmp_path, "dashboards-technician")

        # A supervisor: their stores only; another store's dashboard is refused.
        chen = browser.new_context(viewport=DESKTOP, locale="zh-CN").new_page()
        chen.goto(chat_signin_url(base, "sup-chen"))
        open_ready(chen, base + "/console/dashboards")
        options = chen.eval_on_selector_all("select[name=store] option", "els => els.map(e => e.value)")
        assert options == ["", "S03"]
        response = chen.goto(base + "/console/dashboards?store=S01")
        assert response is not None and response.status == 403
        screenshot_both_widths(chen, tmp_path, "dashboards-forbidden")
        bad = chen.goto(base + "/console/dashboards?from=soon")
        assert bad is not None and bad.status == 400 and "开始日期" in chen.content()
