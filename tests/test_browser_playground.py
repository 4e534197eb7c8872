"""A person in a real browser: headless Chromium (Debian's package) driven by Playwright (tests/browser_support.py)."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from tests.browser_support import DESKTOP, PHONE, PlaygroundApi, png, screenshot

NUMBER = re.compile(r"GD-\d{8}-\d{4}")


class Api(PlaygroundApi):
    """The playground's JSON API, as the page uses it: to prepare a ticket that waits for a signature."""

    def ticket_awaiting_signature(self, customer: str) -> str:
        self.say(customer, text="底盘有异响")
        texts = " ".join(m.get("text") or "" for m in self.messages(customer))
        match = NUMBER.search(texts)
        assert match, texts
        number = match.group(0)
        self.say("sup-li", text=f"转派 {number} tech-wang 测试指定")
        offers = [c for c in self.cards("tech-wang", "offer") if c["ticket_number"] == number and c["state"] == "open"]
        assert offers, self.messages("tech-wang")
        self.call("POST", "/playground/api/actions",
                  {"user": "tech-wang", "card_id": offers[-1]["id"], "action": "accept", "values": {}})
        self.say("tech-wang", location={"lat": 31.2, "lng": 121.5})
        self.say("tech-wang", image=base64.b64encode(png(1)).decode())
        self.say("tech-wang", text=f"开始 {number}")
        for seed in (2, 3, 4):
            self.say("tech-wang", image=base64.b64encode(png(seed)).decode())
        self.say("tech-wang", text=f"完工 {number}")
        assert self.cards(customer, "signoff"), self.messages("tech-wang")
        return number


def test_customer_reports_fault_in_the_browser(served: str, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport=DESKTOP)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(served + "/playground")
    page.wait_for_selector("#who option", state="attached")
    identities = page.eval_on_selector_all("#who option", "options => options.map(o => o.textContent)")
    assert any("（技师｜" in o for o in identities) and any("（管理员）" in o for o in identities), identities
    assert not any(role in o for o in identities for role in ("technician", "admin", "customer")), identities
    page.click("#newCustomer")
    page.fill("#text", "底盘有异响")
    page.click("#send")
    page.wait_for_selector("text=/GD-\\d{8}-\\d{4}/", timeout=10_000)
    assert "机械类" in page.inner_text("#log")
    page.fill("#text", "<b>粗体</b>")
    page.click("#send")
    page.wait_for_selector("text=<b>粗体</b>", timeout=10_000)  # shown as text, not as markup
    icon = page.evaluate("fetch(document.querySelector('link[rel=icon]').href).then(r => r.status)")
    assert icon == 200
    assert failed == []  # no 404 (favicon) or other failed request
    screenshot(page, tmp_path, "playground-desktop.png")


def geometry(page: Any, selector: str) -> dict[str, float]:
    return dict(page.evaluate("""(sel) => {
        const r = document.querySelector(sel).getBoundingClientRect();
        const root = document.scrollingElement;
        return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
                innerWidth: window.innerWidth, innerHeight: window.innerHeight,
                scrollWidth: root.scrollWidth, scrollHeight: root.scrollHeight};
    }""", selector))


def assert_fits_the_phone(page: Any) -> None:
    box = geometry(page, "#text")
    # A mobile browser widens the layout viewport to fit content that overflows (and zooms out):
    # the page must keep the device's own width.
    assert (box["innerWidth"], box["innerHeight"]) == (PHONE["width"], PHONE["height"]), box
    assert box["scrollWidth"] <= box["innerWidth"], box  # no sideways scrolling
    assert box["scrollHeight"] <= box["innerHeight"], box  # only the chat log scrolls
    for selector in ("#text", "#send"):
        box = geometry(page, selector)
        assert box["top"] >= 0 and box["bottom"] <= box["innerHeight"], (selector, box)
        assert box["left"] >= 0 and box["right"] <= box["innerWidth"], (selector, box)


def test_phone_layout_and_card_form_survives_a_redraw(served: str, browser: Any, tmp_path: Path) -> None:
    customer = "cust-phone"
    number = Api(served).ticket_awaiting_signature(customer)
    page = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page.add_init_script(f"localStorage.setItem('ticketbot.user', '{customer}')")
    page.goto(served + "/playground")
    card = page.locator(f".card:has-text('{number}')").filter(has=page.locator("input[type=checkbox]")).last
    card.wait_for(timeout=10_000)
    assert_fits_the_phone(page)  # the identity dropdown holds long names (技师 徐师傅（…电梯维保证）)
    screenshot(page, tmp_path, "playground-phone.png")

    card.locator("input[name=cause_told]").check()
    card.locator("select[name=rating]").select_option("4")
    card.locator("button[data-action=sign]").click()  # parts_confirmed unticked: refused, the chat redraws
    page.wait_for_selector("text=请先勾选「配件更换已确认」再签字", timeout=10_000)
    card = page.locator(f".card:has-text('{number}')").filter(has=page.locator("input[type=checkbox]")).last
    assert card.locator("input[name=cause_told]").is_checked()
    assert card.locator("select[name=rating]").input_value() == "4"
    assert not card.locator("input[name=parts_confirmed]").is_checked()
    assert_fits_the_phone(page)
    screenshot(page, tmp_path, "playground-phone-refused.png")

    card.locator("input[name=parts_confirmed]").check()
    card.locator("button[data-action=sign]").click()  # what was kept is what is sent
    page.wait_for_selector(f"text=/{number} 已结案/", timeout=10_000)
    screenshot(page, tmp_path, "playground-phone-signed.png")
