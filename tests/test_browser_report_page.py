"""The store report page in headless Chromium at phone width (390 px), against a real `ticketbot serve`
(the demo directory has store S01): filled in as a phone would (position from the browser, a photo
from the gallery), with a refused photo on the way (the message in Chinese, the typed text still there),
then the answer with the ticket number and the tracking link. The same without JavaScript, and with
SMS configured (the code step, then the ticket's first notice by SMS, from a fake provider endpoint)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.browser_support import PHONE, png, screenshot_both_widths, serve
from tests.fakes.sms_provider import FakeSmsProvider

DESCRIPTION = "空调不制冷了，出风口是热风"


def phone_context(browser: Any, **options: Any) -> Any:
    return browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                               locale="zh-CN", **options)


def test_report_on_the_phone(served: str, browser: Any, tmp_path: Path) -> None:
    context = phone_context(browser, geolocation={"latitude": 31.2304, "longitude": 121.4737},
                            permissions=["geolocation"])
    try:
        page = context.new_page()
        loaded: list[int] = []
        page.on("response", lambda r: loaded.append(int(r.headers.get("content-length") or len(r.body()))))
        page.goto(served + "/r/S01", wait_until="load")
        assert page.inner_text("header h1") == "故障报修" and "浦东张江店" in page.inner_text("header")
        assert sum(loaded) <= 150_000  # first load on a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
        box = page.locator("#website").bounding_box()
        assert box is None or box["x"] + box["width"] <= 0  # the honeypot is off-screen: not for people
        page.fill("#phone", "138 0013 8000")
        page.fill("#subject", "沪A12345")
        page.fill("#description", DESCRIPTION)
        page.click("#locate")
        page.wait_for_function("document.getElementById('lat').value !== ''")
        assert "已记录当前位置" in page.inner_text("#loc-status")
        page.set_input_files("#photos", [
            {"name": "outdoor-unit.png", "mimeType": "image/png", "buffer": png(1)},
            {"name": "invoice.pdf", "mimeType": "image/png", "buffer": b"%PDF-1.4 not a photo"}])
        screenshot_both_widths(page, tmp_path, "report-form")
        page.click("#submit-report")
        page.wait_for_selector("#form-errors")
        errors = page.inner_text("#form-errors")
        assert "invoice.pdf" in errors and "不是可识别的图片" in errors
        assert page.input_value("#description") == DESCRIPTION and page.input_value("#subject") == "沪A12345"
        assert "已保存 1 张照片" in page.inner_text("#kept-photos")
        screenshot_both_widths(page, tmp_path, "report-form-refused-photo")
        page.click("#submit-report")
        page.wait_for_selector("#report-done")
        number = page.inner_text("#ticket-number")
        assert number.startswith("GD-") and "已附上 1 张照片" in page.inner_text("#report-done")
        link = page.locator("#tracking-link")
        if link.count():  # the tracking page (helper B's) is there: the answer links to it
            href = str(link.get_attribute("href"))
            assert href.startswith(served + "/t/") and number not in href
        screenshot_both_widths(page, tmp_path, "report-done")
    finally:
        context.close()


def test_report_without_javascript(served: str, browser: Any, tmp_path: Path) -> None:
    context = phone_context(browser, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(served + "/r/S01")
        assert not page.locator("#locate").is_visible()  # needs the browser's position API
        page.fill("#phone", "13900001111")
        page.fill("#description", "发动机故障灯亮")
        page.fill("#address", "上海市浦东新区世纪大道 100 号")
        page.click("#submit-report")
        page.wait_for_selector("#report-done")
        assert page.inner_text("#ticket-number").startswith("GD-")
        missing = context.new_page()
        missing.goto(served + "/r/NO-SUCH-STORE")
        assert "找不到这家门店" in missing.inner_text("body")
        screenshot_both_widths(missing, tmp_path, "report-unknown-store")
    finally:
        context.close()


@contextlib.contextmanager
def fake_provider_thread() -> Iterator[FakeSmsProvider]:
    """The fake SMS endpoint on its own event loop in a thread (the browser test is synchronous)."""
    fake = FakeSmsProvider()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_report_with_an_sms_code(browser: Any, tmp_path: Path) -> None:
    with fake_provider_thread() as fake, serve(tmp_path, {
            "SMS_PROVIDER": "tencent", "SMS_SIGN_NAME": fake.sign_name, "SMS_ENDPOINT": fake.base_url,
            "TENCENT_SECRET_ID": "AKID-test-id", "TENCENT_SECRET_KEY": "tencent-test-secret",
            "TENCENT_SMS_SDK_APP_ID": fake.sdk_app_id, "SMS_TEMPLATE_CODE_VERIFY": "100001",
            "SMS_TEMPLATE_CODE_NOTICE": "100002"}) as served:
        context = phone_context(browser)
        try:
            page = context.new_page()
            page.goto(served + "/r/S01")
            page.fill("#phone", "13800138000")
            page.fill("#description", DESCRIPTION)
            page.click("#send-code")
            page.wait_for_selector("#form-notice")
            assert "验证码已发送至 138****8000" in page.inner_text("#form-notice")
            assert page.input_value("#description") == DESCRIPTION  # the first step kept the form
            screenshot_both_widths(page, tmp_path, "report-form-code-sent")
            [sent] = fake.sent
            assert sent.template == "100001" and sent.phone == "+8613800138000"
            page.fill("#code", str(sent.params[0]))
            page.press("#code", "Enter")  # the keyboard's 前往 submits the report, it asks no new code
            page.wait_for_selector("#report-done")
            number = page.inner_text("#ticket-number")
            assert "短信通知" in page.inner_text("#report-done")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any(s.template == "100002" for s in fake.sent):
                time.sleep(0.1)
            notice = next(s for s in fake.sent if s.template == "100002")  # the ticket's first notice, by SMS
            assert notice.params[0] == number and str(notice.params[2]).startswith(served + "/")
            assert fake.bad_signatures == 0
        finally:
            context.close()
