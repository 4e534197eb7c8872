"""kf/sync_msg: pulled twice is one inbox row, concurrent syncs, a sync failing midway resumes from
the stored cursor, unknown accounts are ignored, voice/video/file get a polite answer once.
On SQLite and PostgreSQL (the cursor's optimistic version and the inbox's uniqueness)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from adapters.wecom.kf_sync import KfSync
from storage.tables import InboxRow, TicketRow
from storage.tables_kf import KfCursorRow
from tests.wecom_kf_support import ACCOUNT, KfWorld, eventually, kf_fake, kf_world  # noqa: F401 (fixtures)


async def _rows(world: KfWorld) -> list[str]:
    async with world.runtime.sessions() as session:
        result = await session.execute(select(col(InboxRow.event_key)).where(col(InboxRow.platform) == "wecom_kf"))
        return sorted(str(k) for k in result.scalars())


async def _cursor(world: KfWorld) -> str:
    async with world.runtime.sessions() as session:
        row = await session.get(KfCursorRow, ACCOUNT)
        return row.cursor if row else ""


def _small_pages(world: KfWorld, limit: int) -> KfSync:
    sync = world.adapter.sync
    sync._config = dataclasses.replace(sync._config, sync_limit=limit)  # pages of `limit`, to see paging
    return sync


async def test_a_message_pulled_twice_is_one_inbox_row_and_one_reply(kf_world: KfWorld) -> None:  # noqa: F811
    li = kf_world.customer("wmLI")
    msgid = await li.say("中控黑屏")
    await eventually(lambda: [t for t in li.texts() if "已为您创建工单" in t], what="the reply")
    await li.notify()  # a re-sent callback: the cursor is past the message
    async with kf_world.runtime.sessions() as session:  # and a cursor lost: the whole log is pulled again
        await session.execute(update(KfCursorRow).values(cursor=""))
        await session.commit()
    await li.notify()
    await kf_world.synced()
    assert await _rows(kf_world) == [f"msg:{msgid}"]
    await asyncio.sleep(0.5)  # a dispatcher round for any second reply
    assert len([t for t in li.texts() if "已为您创建工单" in t]) == 1
    assert await kf_world.count(TicketRow) == 1


async def test_two_concurrent_syncs_make_one_row_per_message_and_never_move_the_cursor_back(
        kf_world: KfWorld) -> None:  # noqa: F811
    for n in range(7):
        kf_world.fake.customer_message(ACCOUNT, f"wmC{n}", "text", {"content": "你好"})
    sync = _small_pages(kf_world, 3)
    token = kf_world.fake.issue_sync_token()
    # Two processes' syncs at once (this process would coalesce them; the database must cope alone).
    first, second = await asyncio.gather(sync.sync(ACCOUNT, token), sync.sync(ACCOUNT, token))
    assert first.pulled + second.pulled >= 7
    assert first.accepted + second.accepted == 7
    assert len(await _rows(kf_world)) == 7
    assert await _cursor(kf_world) == "c7"
    await sync.sync(ACCOUNT, token)  # whoever stopped early: the next sync finds nothing new
    assert len(await _rows(kf_world)) == 7


async def test_a_cursor_is_saved_only_over_the_version_that_was_read(kf_world: KfWorld) -> None:  # noqa: F811
    from storage.kf_store import SqlKfState

    state = SqlKfState(kf_world.runtime.sessions)
    seen = await state.cursor("wkA")
    first = await state.save_cursor("wkA", seen, "c10")
    assert first == ("c10", 1)
    assert await state.save_cursor("wkA", seen, "c5") is None  # a slower syncer: stops, cursor stays
    assert await state.save_cursor("wkA", first, "c20") is not None
    assert await state.cursor("wkA") == ("c20", 2)


async def test_a_sync_failing_midway_resumes_from_the_stored_cursor_without_loss_or_duplicates(
        kf_world: KfWorld) -> None:  # noqa: F811
    ids = [kf_world.fake.customer_message(ACCOUNT, f"wmF{n}", "text", {"content": "谢谢"}) for n in range(5)]
    _small_pages(kf_world, 2)
    kf_world.fake.fail_sync_calls = {2}  # the second page answers HTTP 500
    customer = kf_world.customer("wmF0")
    assert await customer.notify() == 200
    await kf_world.synced()
    assert await _rows(kf_world) == sorted(f"msg:{i}" for i in ids[:2])
    assert await _cursor(kf_world) == "c2"
    assert kf_world.adapter.sync.last_error is not None
    assert await customer.notify() == 200  # the next callback
    await kf_world.synced()
    assert await _rows(kf_world) == sorted(f"msg:{i}" for i in ids)
    cursors = [call["cursor"] for call in kf_world.fake.sync_calls]
    assert cursors == ["", "c2", "c2", "c4"]  # resumed where the saved cursor was, page by page
    assert all(call["limit"] == 2 and call["open_kfid"] == ACCOUNT and call["token"] for call in
               kf_world.fake.sync_calls)


async def test_a_callback_for_an_unknown_open_kfid_is_ignored_and_logged(
        kf_world: KfWorld, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    stranger = kf_world.customer("wmX", open_kfid="wkNOTOURS")
    with caplog.at_level(logging.WARNING):
        assert await stranger.notify() == 200
        await kf_world.synced()
    assert kf_world.fake.sync_calls == []
    assert "unknown open_kfid 'wkNOTOURS'" in caplog.text


async def test_a_message_of_an_unknown_account_inside_a_sync_is_ignored(
        kf_world: KfWorld, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    # WeCom would not send it, but a message naming another account must not become a customer.
    kf_world.fake.log.setdefault(ACCOUNT, []).append({
        "msgid": "odd1", "open_kfid": "wkOTHER", "external_userid": "wmQ", "send_time": 1, "origin": 3,
        "msgtype": "text", "text": {"content": "底盘有异响"}})
    with caplog.at_level(logging.WARNING):
        assert await kf_world.customer("wmQ").notify() == 200
        await kf_world.synced()
    assert await _rows(kf_world) == []
    assert "unknown open_kfid 'wkOTHER'" in caplog.text


@pytest.mark.parametrize("msgtype", ["voice", "video", "file"])
async def test_voice_video_and_file_get_a_polite_answer_once(kf_world: KfWorld, msgtype: str) -> None:  # noqa: F811
    zhao = kf_world.customer("wmZHAO")
    await zhao.send(msgtype, {"media_id": "MEDIA_1"})
    answer = await eventually(zhao.texts, what="the polite answer")
    assert "文字" in answer[0] and "照片" in answer[0]
    async with kf_world.runtime.sessions() as session:
        await session.execute(update(KfCursorRow).values(cursor=""))
        await session.commit()
    await zhao.notify()  # pulled again: no second answer
    await kf_world.synced()
    await asyncio.sleep(0.3)
    assert len(zhao.texts()) == 1
    assert await _rows(kf_world) == []
    assert await kf_world.count(TicketRow) == 0


async def test_a_human_servicers_message_in_the_log_is_not_a_customer_message(kf_world: KfWorld) -> None:  # noqa: F811
    he = kf_world.customer("wmHE")
    await he.say("底盘有异响")
    await eventually(lambda: he.texts(), what="the reply")
    kf_world.fake.servicer_message(ACCOUNT, "wmHE", "您好，我是客服小张")  # origin 5
    await he.notify()
    await kf_world.synced()
    assert len(await _rows(kf_world)) == 1


async def test_a_stale_or_forged_callback_is_refused_and_syncs_nothing(kf_world: KfWorld) -> None:  # noqa: F811
    sun = kf_world.customer("wmSUN")
    kf_world.fake.customer_message(ACCOUNT, "wmSUN", "text", {"content": "底盘有异响"})
    assert await sun.notify(timestamp=int(kf_world.clock.timestamp()) - 3600) == 403  # outside the window
    query, body = kf_world.signer.post(kf_world.fake.callback_xml(ACCOUNT, "T"))
    query["msg_signature"] = "0" * 40
    resp = await kf_world.client.post("/wecom/callback", params=query, data=body)
    assert resp.status == 403
    await kf_world.synced()
    assert kf_world.fake.sync_calls == []
