"""The admin pages and the ops view in a real browser (issue 22): an admin signs in from a chat link, edits
one SLA cell in the 27-cell table, previews it (the changed cell, the business-time due table), confirms and
finds the new version in the history; adds a keyword through the rules form with the dry run and confirms;
a supervisor is refused. Screenshots of every admin page and the ops page at 390 and 1440 px
(test-artifacts/screenshots/console-admin-*.png, console-ops-*.png)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.browser_support import DESKTOP, screenshot_both_widths, serve
from tests.console_support import chat_signin_url
from tests.test_browser_playground import NUMBER, Api

CELL = "urgent.plant.working"


def dead_delivery(db: Path) -> int:
    at = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(db, timeout=10) as conn:
        cursor = conn.execute(
            "INSERT INTO outbox (recipient_id, channel, payload, reply_context, status, attempts, created_at,"
            " next_attempt_at, error) VALUES (?, 'wecom', ?, '{}', 'dead', 12, ?, ?, ?)",
            ("cust-demo", json.dumps({"recipient_id": "cust-demo", "text": "您的工单已受理，查看进度：…"}), at, at,
             "WeCom errcode 40008: invalid message content"))
        return int(cursor.lastrowid or 0)


def test_admin_edits_the_sla_matrix_and_a_keyword_rule_in_the_browser(browser: Any, tmp_path: Path) -> None:
    with serve(tmp_path) as base:
        context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
        page = context.new_page()
        page.goto(chat_signin_url(base, "admin"))
        assert page.url == base + "/console/"

        page.goto(base + "/console/admin/")
        assert page.locator(".section-list li").count() == 6
        screenshot_both_widths(page, tmp_path, "console-admin")

        # The SLA matrix: 27 cells, one changed, previewed at a chosen moment, confirmed.
        page.goto(base + "/console/admin/sla")
        assert page.locator('#sla-form input[name$=".response"]').count() == 27
        screenshot_both_widths(page, tmp_path, "console-admin-sla")
        page.fill(f'input[name="{CELL}.response"]', "10")
        page.fill('input[name="start"]', "2026-12-31T17:50")
        page.click("#preview")
        page.wait_for_selector("#preview-lines")
        lines = page.locator("#preview-lines li").all_inner_texts()
        assert len(lines) == 1 and lines[0].startswith("紧急×全厂×工作时间：") and "10分钟" in lines[0]
        assert "2026-12-31 17:50" in page.content()  # the business-time table for that start
        screenshot_both_widths(page, tmp_path, "console-admin-sla-preview")
        page.click("#confirm")
        page.wait_for_selector(".notice")
        assert "版本 1" in page.locator(".notice").inner_text()
        assert page.input_value(f'input[name="{CELL}.response"]') == "10"
        assert "v1（当前）" in page.locator(".admin-history").inner_text()

        # A bad cell: the page says which one, keeps the typed value, saves nothing.
        page.fill('input[name="normal.user.working.resolution"]', "很久")
        page.click("#preview")
        page.wait_for_selector("#form-error")
        assert page.locator("#form-error").get_attribute("data-field") == "normal.user.working.resolution"
        assert page.locator('input[name="normal.user.working.resolution"]').get_attribute("aria-invalid") == "true"
        screenshot_both_widths(page, tmp_path, "console-admin-sla-error")

        # A keyword rule with the dry run over recent tickets (two reported through the playground).
        api = Api(base)
        numbers = []
        for user, text in (("cust-b1", "空调出风口咔咔响，声音很大"), ("cust-b2", "车门异响")):
            api.say(user, text=text)
            found = NUMBER.search(" ".join(m.get("text") or "" for m in api.messages(user)))
            assert found
            numbers.append(found.group(0))
        page.goto(base + "/console/admin/rules")
        page.select_option('select[name="op"]', "add")
        page.fill('input[name="category"]', "电控类")
        page.fill('input[name="keywords"]', "咔咔响")
        page.fill('input[name="sample"]', "仪表盘咔咔响")
        page.click("#preview")
        page.wait_for_selector("#preview-lines")
        assert "「电控类」添加关键词：咔咔响" in page.locator("#preview-lines").inner_text()
        dry_run = page.locator(".preview-table").last.inner_text()
        assert numbers[0] in dry_run and numbers[1] not in dry_run  # only the 咔咔响 ticket would move
        screenshot_both_widths(page, tmp_path, "console-admin-rules-preview")
        page.click("#confirm")
        page.wait_for_selector(".notice")
        assert "咔咔响" in page.locator("#rules-table tr", has_text="电控类").inner_text()
        screenshot_both_widths(page, tmp_path, "console-admin-rules")

        # The history's diff link of the SLA change.
        page.goto(base + "/console/admin/sla/diff?from=0&to=1")
        assert "紧急×全厂×工作时间" in page.locator("#diff-lines").inner_text()

        for slug in ("template", "sop", "dispatch", "holidays"):
            response = page.goto(f"{base}/console/admin/{slug}")
            assert response is not None and response.status == 200
            screenshot_both_widths(page, tmp_path, f"console-admin-{slug}")

        # A delivery WeCom refused for good (no WeCom sender runs here, so a retry stays queued).
        dead = dead_delivery(tmp_path / "tb.db")
        response = page.goto(base + "/console/ops/")
        assert response is not None and response.status == 200
        row = page.locator(f"#delivery-{dead}")
        assert "40008" in row.inner_text() and "失败" in row.inner_text()
        screenshot_both_widths(page, tmp_path, "console-ops")
        row.locator("button").click()
        page.wait_for_selector(".notice")
        assert f"已重试投递 {dead}" in page.locator(".notice").inner_text()
        assert page.locator(f"#delivery-{dead}").count() == 0  # queued afresh: no longer a failure
        wecom = page.locator("#outbox-counts tr", has_text="wecom").locator("td").all_inner_texts()
        assert wecom[1:4] == ["1", "0", "0"]  # 待投递 1, 发送中 0, 失败 0

        supervisor = browser.new_context(viewport=DESKTOP, locale="zh-CN").new_page()
        supervisor.goto(chat_signin_url(base, "sup-li"))
        refused = supervisor.goto(base + "/console/admin/sla")
        assert refused is not None and refused.status == 403
        ops = supervisor.goto(base + "/console/ops/")
        assert ops is not None and ops.status == 200 and supervisor.locator("#failed-deliveries").count() == 0
