"""A rule change reaches every process without a restart: another Runtime on the same database picks it up."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from aiohttp.test_utils import TestClient

from bot.rules.rulebook import RULES_KIND, RuleBook, shipped_rules
from bot.runtime import Runtime
from core.inbound import InboundKind, InboundMessage
from tests.conftest import make_settings
from tests.playground_client import PlaygroundUser

REPO = Path(__file__).resolve().parent.parent


async def next_state(process: asyncio.subprocess.Process, timeout_s: float = 30.0) -> dict[str, object]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout_s)
    assert line, "the second process ended early"
    return dict(json.loads(line))


async def test_another_process_classifies_with_new_rules_after_its_sweep(app_client: TestClient,
                                                                          database_url: str,
                                                                          tmp_path: Path) -> None:
    # A real second process (on SQLite two runtimes cannot share one event loop: its driver runs inline).
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.test_rules_admin_process", database_url, str(tmp_path / "other"), "雨刮器坏了",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=REPO)
    try:
        assert await next_state(process) == {"version": 0, "category": None}
        admin = PlaygroundUser(app_client, "admin")
        await admin.say("规则 添加 机械类 雨刮器")
        assert "已生效" in await admin.last_text()
        assert await next_state(process) == {"version": 1, "category": "机械类"}  # no restart

        await admin.say("规则 回滚 0")
        assert await next_state(process) == {"version": 2, "category": None}
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_a_process_started_later_uses_the_stored_rules_at_once(app_client: TestClient, database_url: str,
                                                                    tmp_path: Path) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 添加 机械类 雨刮器")
    late = Runtime(make_settings(database_url, tmp_path / "late"))
    await late.start(background=False)
    try:
        assert late.rulebook.version == 1
        await late.rulebook.ready()
        assert late.rulebook.classify("雨刮器坏了").category == "机械类"
        # A customer talking to the late process gets the new routing too.
        await late.conversation.handle(InboundMessage("local", "late-1", "cust-late", InboundKind.TEXT,
                                                      text="雨刮器坏了"))
        async with late.uow() as uow:
            tickets = await uow.list_tickets(customer_id="cust-late")
        assert [t.category for t in tickets] == ["机械类"]
    finally:
        await late.stop()


async def test_refresh_installs_only_when_the_stored_version_changed(app_client: TestClient, database_url: str,
                                                                     tmp_path: Path) -> None:
    book = RuleBook()
    late = Runtime(make_settings(database_url, tmp_path / "refresh"))
    try:
        async with late.uow() as uow:
            assert await book.refresh(uow) is False  # nothing stored: the shipped defaults stay (v0)
            await uow.save_config(RULES_KIND, {**shipped_rules().to_dict(), "version": 99}, actor_id="admin",
                                  note="test", at=late.clock.now())
            await uow.commit()
        async with late.uow() as uow:
            assert await book.refresh(uow) is True
        async with late.uow() as uow:
            assert await book.refresh(uow) is False
        assert book.version == 1  # numbered like its row, whatever the payload said
        await book.ready()
        assert book.warmed and book.classify("中控黑屏").rules_version == 1
    finally:
        await late.stop()


async def test_ready_shares_one_warm_up_between_waiters() -> None:
    book = RuleBook()
    await asyncio.gather(*(book.ready() for _ in range(5)))
    assert book.warmed
    await book.install(7, shipped_rules().to_dict())
    assert book.warmed and book.version == 7  # a change installs an already warm classifier


async def test_an_older_install_never_replaces_a_newer_one() -> None:
    book = RuleBook()
    await book.install(3, shipped_rules().to_dict())
    await book.install(2, shipped_rules().to_dict())  # e.g. this process's own install, after a refresh got v3
    assert book.version == 3


async def test_the_same_text_is_classified_once_per_rule_set() -> None:
    """Routing and report_fault ask about the same text: the second answer is the first one, but
    never an answer from rules that have since been replaced."""
    book = RuleBook()
    await book.ready()
    first = book.classify("中控黑屏")
    assert book.classify("中控黑屏") is first
    assert book.classify("底盘有异响").text == "底盘有异响"  # another text: another answer
    await book.install(5, shipped_rules().to_dict())
    again = book.classify("中控黑屏")
    assert again is not first and again.rules_version == 5 and again.category == first.category
