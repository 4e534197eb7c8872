"""微信客服 end to end: the real app (callback, sync, inbox, core, outbox, kf sender) on SQLite and
PostgreSQL against the fake kf API; callbacks sealed and signed with wechatpy's own crypto."""

from __future__ import annotations

import re

from storage.tables import InboxRow, TicketRow
from tests.wecom_kf_support import ACCOUNT, KfWorld, eventually, kf_fake, kf_world  # noqa: F401 (fixtures)

NUMBER = re.compile(r"GD-\d{8}-\d{4}")


async def test_a_wechat_user_reports_a_fault_and_gets_the_reply(kf_world: KfWorld) -> None:  # noqa: F811
    wang = kf_world.customer("wmWANG001")
    await wang.say("底盘有异响")
    reply = await eventually(lambda: [t for t in wang.texts() if "已为您创建工单" in t], what="the reply")
    assert NUMBER.search(reply[0])
    assert re.search(r"查看进度：https://tb\.example\.com/t/[A-Za-z0-9_-]{20,}", reply[0])  # the tracking link
    person = await kf_world.person_of(wang)
    assert person is not None and person.preferred_channel == "wecom_kf"
    assert await kf_world.count(TicketRow, TicketRow.customer_id == person.id) == 1
    (sent,) = [b for b in wang.received() if "已为您创建工单" in b["text"]["content"]]
    assert sent["open_kfid"] == ACCOUNT and sent["touser"] == "wmWANG001"
    # The kf APIs were called with the kf secret's token only.
    assert kf_world.fake.kf_gettoken_calls == 1 and kf_world.fake.gettoken_calls == 0
    assert await kf_world.count(InboxRow, InboxRow.platform == "wecom_kf") == 1
