"""The 后台 button on the help card (issue 22: staff "send 后台 (or press a button on their help card)"):
staff who may use the console get a card with the button under their 帮助 answer; pressing it does
what typing 后台 does. Customers and technicians get no button."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.chat.console_link import SIGN_IN_ACTION
from bot.console.auth import COOKIE
from bot.web.app import build_app
from tests.conftest import make_settings, runtime_of
from tests.console_support import signin_url_in
from tests.playground_client import PlaygroundUser


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    settings = make_settings(database_url, tmp_path, public_base_url="http://console.example.cn")
    async with TestClient(TestServer(build_app(settings))) as test_client:
        yield test_client


def _console_buttons(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in cards if any(a["id"] == SIGN_IN_ACTION for a in c.get("actions") or ())]


@pytest.mark.parametrize("user", ["sup-li", "admin", "qa-sun", "wh-zhao"])
async def test_staff_get_a_console_button_under_their_help_that_signs_them_in(client: TestClient,
                                                                             user: str) -> None:
    person = PlaygroundUser(client, user)
    await person.say("帮助")
    help_text = await person.last_text()
    assert "可以使用的命令" in help_text and "后台" in help_text  # the answer itself is unchanged
    [card] = _console_buttons(await person.cards())
    assert "/console/signin/" not in str(card)  # no link waits on a card: it is made at the press

    await person.press(card["id"], SIGN_IN_ACTION)
    url = signin_url_in(await person.texts())
    assert url.startswith("http://console.example.cn/console/signin/")
    opened = await client.get(url.removeprefix("http://console.example.cn"), allow_redirects=False)
    assert opened.status == 302 and opened.headers["Location"] == "/console/"
    assert COOKIE in opened.cookies
    pressed = [c for c in await person.cards() if c["id"] == card["id"]]
    assert pressed[-1]["state"] == "used" and "登录链接" in pressed[-1]["closed_note"]

    # The link is the same one-time link as 后台's: used once, it opens nothing more.
    again = await client.get(url.removeprefix("http://console.example.cn"), allow_redirects=False)
    assert again.status != 302 or again.headers.get("Location") != "/console/"


@pytest.mark.parametrize("user", ["tech-wang", "cust-help"])
async def test_technicians_and_customers_get_no_console_button(client: TestClient, user: str) -> None:
    person = PlaygroundUser(client, user)
    for word in ("帮助", "help", "菜单"):
        await person.say(word)
        assert await person.last_text()
    assert _console_buttons(await person.cards()) == []


async def test_a_button_pressed_after_losing_the_console_role_is_refused(client: TestClient) -> None:
    boss = PlaygroundUser(client, "wh-zhao")
    await boss.say("帮助")
    [card] = _console_buttons(await boss.cards())
    runtime = runtime_of(client)
    async with runtime.uow() as uow:
        person = await uow.get_person("wh-zhao")
        assert person is not None
        person.active = False
        await uow.save_person(person)
        await uow.commit()
    await boss.press(card["id"], SIGN_IN_ACTION)
    assert "/console/signin/" not in " ".join(await boss.texts())


async def test_a_card_pressed_in_a_process_that_has_not_answered_help_yet(sqlite_url: str, tmp_path: Path) -> None:
    """After a restart the card still answers: with a link when the runtime registered itself at start
    (`attach_console_links`), else by asking for 后台 — never silence, never someone else's runtime."""
    from bot.chat.console_link import _RUNTIMES

    settings = make_settings(sqlite_url, tmp_path, public_base_url="http://console.example.cn")
    async with TestClient(TestServer(build_app(settings))) as first:
        await PlaygroundUser(first, "sup-li").say("帮助")
        [card] = _console_buttons(await PlaygroundUser(first, "sup-li").cards())
    async with TestClient(TestServer(build_app(settings))) as restarted:
        registered = runtime_of(restarted).service in _RUNTIMES
        person = PlaygroundUser(restarted, "sup-li")
        await person.press(card["id"], SIGN_IN_ACTION)
        answer = await person.last_text()
        if registered:
            assert signin_url_in([answer]).startswith("http://console.example.cn/console/signin/")
        else:
            assert answer == "请发送「后台」获取后台登录链接。"
            assert [c for c in await person.cards() if c["id"] == card["id"]][-1]["state"] == "open"
            await person.say("帮助")  # any 帮助 (or 后台) registers this process: the card works again
            await person.press(card["id"], SIGN_IN_ACTION)
            assert "/console/signin/" in await person.last_text()



def test_the_help_cards_registry_does_not_keep_a_runtime_alive(sqlite_url: str, tmp_path: Path) -> None:
    """The registry is weak both ways: a strong runtime value would keep its service key, so every stopped
    runtime (its engine, caches, classifier) would stay in memory for the life of the process."""
    import gc
    import weakref

    from bot.chat.console_link import _RUNTIMES
    from bot.runtime import Runtime

    runtime = Runtime(make_settings(sqlite_url, tmp_path))  # registers itself in __init__
    assert _RUNTIMES[runtime.service]() is runtime
    gone = weakref.ref(runtime)
    del runtime
    gc.collect()
    assert gone() is None
