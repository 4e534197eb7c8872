"""The ticket file /console/tickets/<number> (issue 22): the whole trail in words, photos and the signature
served only within scope, the chain check, and staff actions that run the chat's commands."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image, ImageDraw
from sqlalchemy import select, update

from bot.signature_store import SignatureStore
from bot.web.app import build_app
from storage.tables import AuditEventRow, TicketRow
from tests.conftest import make_settings, runtime_of
from tests.console_support import sign_in
from tests.test_lifecycle_support import Person, accept, png, report, ticket


@pytest.fixture
async def client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    app = build_app(make_settings(sqlite_url, tmp_path))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def handwriting() -> str:
    image = Image.new("RGBA", (600, 240), (255, 255, 255, 0))
    draw = ImageDraw.Draw(image)
    draw.line([(40, 160), (160, 60), (260, 180), (380, 70), (540, 150)], fill=(0, 0, 0, 255), width=6)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def closed_ticket(client: TestClient, *, store: str = "S01") -> tuple[str, list[bytes], str]:
    """A ticket through the whole lifecycle (parts, plan, signature image); (number, photos, signature sha)."""
    runtime = runtime_of(client)
    customer, tech, keeper = Person(client, "cust-file"), Person(client, "tech-wang"), Person(client, "wh-zhao")
    number = await report(client, "cust-file", "空调不制冷了，出风口是热风")
    async with runtime.sessions() as s:
        await s.execute(update(TicketRow).where(TicketRow.number == number).values(store_id=store))
        await s.commit()
    await accept(client, number, "tech-wang")
    photos = [png("c-checkin"), png("c-fault"), png("c-meter"), png("c-plate")]
    await tech.image(photos[0])
    await tech.location(31.2041, 121.5901)
    await tech.say("开始")
    await tech.image(photos[1])
    await tech.image(photos[2])
    await tech.say("等待备件 压缩机继电器 B325")
    await keeper.press((await keeper.last_card("task"))["id"], "ready")
    await tech.say("方案 更换压缩机继电器，费用约 300 元")
    await customer.press((await customer.last_card("task"))["id"], "approve")
    await tech.image(photos[3])
    await tech.say("完工")
    stored = await SignatureStore(runtime.settings.data_dir).store(handwriting(), number=number,
                                                                   signed_at=datetime.now(UTC))
    card = await customer.last_card("signoff")
    await customer.press(card["id"], "sign", {"cause_told": "true", "parts_confirmed": "true", "rating": "4",
                                              "signature_sha256": stored.sha256})
    assert (await ticket(client, number)).status.value == "closed"
    return number, photos, stored.sha256


async def forbidden_events(client: TestClient) -> list[AuditEventRow]:
    async with runtime_of(client).sessions() as s:
        return list((await s.execute(select(AuditEventRow).where(AuditEventRow.kind == "console_forbidden")))
                    .scalars())


async def test_the_file_shows_everything_the_audit_knows(client: TestClient) -> None:
    number, photos, signature = await closed_ticket(client)
    await sign_in(client, runtime_of(client), "sup-li")
    resp = await client.get(f"/console/tickets/{number}")
    assert resp.status == 200
    page = await resp.text()
    # Offers with their score breakdown, who accepted.
    assert "资质匹配" in page and "当前负载" in page and "接单" in page and "技师 王师傅" in page
    # Check-in with its position (text and the map's data), SOP steps, parts, plan.
    assert "31.20410, 121.59010" in page and 'id="checkin-map"' in page and "leaflet.js" in page
    assert "SOP：" in page and "<ol><li>" in page
    assert "等待备件：压缩机继电器 B325" in page and "更换压缩机继电器，费用约 300 元" in page and "同意" in page
    # The sign-off: both confirmations, the rating, the signature image.
    assert "已告知故障原因" in page and "配件更换已确认" in page and "✓ 已勾选" in page and "（4 分）" in page
    assert f"/console/tickets/{number}/signature" in page
    # SLA, the trail in words, the chain check.
    assert "响应" in page and "达成" in page and "等待备件 → 检修中" in page
    assert "审计记录完整" in page
    # Every photo as an image, served to this person.
    for data in photos:
        sha = hashlib.sha256(data).hexdigest()
        assert f"/console/tickets/{number}/photos/{sha}" in page
        image = await client.get(f"/console/tickets/{number}/photos/{sha}")
        assert image.status == 200 and image.content_type == "image/png" and await image.read() == data
    sig = await client.get(f"/console/tickets/{number}/signature")
    assert sig.status == 200 and sig.content_type == "image/png"
    assert hashlib.sha256(await sig.read()).hexdigest() == signature


async def test_a_tampered_event_shows_on_the_file(client: TestClient) -> None:
    number, _, _ = await closed_ticket(client)
    async with runtime_of(client).sessions() as s:
        row = (await s.execute(select(AuditEventRow).where(AuditEventRow.ticket_number == number,
                                                           AuditEventRow.kind == "signed_off"))).scalar_one()
        await s.execute(update(AuditEventRow).where(AuditEventRow.seq == row.seq)
                        .values(payload={**row.payload, "rating": 5}))
        await s.commit()
    await sign_in(client, runtime_of(client), "admin")
    page = await (await client.get(f"/console/tickets/{number}")).text()
    assert "发现问题" in page and f"记录 #{row.seq}（signed_off）的内容与其哈希不符" in page


async def test_out_of_scope_file_photos_and_signature_are_403_and_audited(client: TestClient) -> None:
    number, photos, _ = await closed_ticket(client, store="S01")
    await sign_in(client, runtime_of(client), "sup-chen")  # S03 only
    sha = hashlib.sha256(photos[1]).hexdigest()
    for path in (f"/console/tickets/{number}", f"/console/tickets/{number}/photos/{sha}",
                 f"/console/tickets/{number}/signature"):
        resp = await client.get(path)
        assert resp.status == 403, path
        assert "无权访问" in await resp.text()
        assert resp.content_type == "text/html"
    events = await forbidden_events(client)
    assert len(events) == 3 and {e.actor_id for e in events} == {"sup-chen"}
    assert {e.ticket_number for e in events} == {number}
    assert any("照片" in e.payload["what"] for e in events)


async def test_a_photo_only_through_its_own_ticket(client: TestClient) -> None:
    number, photos, _ = await closed_ticket(client)
    other = await report(client, "cust-other")
    await sign_in(client, runtime_of(client), "admin")
    sha = hashlib.sha256(photos[0]).hexdigest()
    assert (await client.get(f"/console/tickets/{other}/photos/{sha}")).status == 404
    assert (await client.get(f"/console/tickets/{number}/photos/../../audit.key")).status in (403, 404)
    assert (await client.get(f"/console/tickets/{number}/photos/{'z' * 64}")).status == 404
    assert (await client.get(f"/console/tickets/{other}/signature")).status == 404
    missing = await client.get("/console/tickets/GD-20990101-9999")
    assert missing.status == 404 and "没有工单" in await missing.text()


async def csrf_of(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', await (await client.get(path)).text())
    assert found
    return found.group(1)


async def test_staff_actions_run_the_chat_commands(client: TestClient) -> None:
    number = await report(client, "cust-act")
    async with runtime_of(client).sessions() as s:
        await s.execute(update(TicketRow).where(TicketRow.number == number).values(store_id="S01"))
        await s.commit()
    await sign_in(client, runtime_of(client), "sup-li")
    csrf = await csrf_of(client, f"/console/tickets/{number}")
    resp = await client.post(f"/console/tickets/{number}/priority",
                             data={"csrf_token": csrf, "priority": "紧急", "impact": "单用户"}, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].endswith("?done=priority")
    assert (await ticket(client, number)).priority == "紧急"
    async with runtime_of(client).sessions() as s:
        changed = (await s.execute(select(AuditEventRow).where(AuditEventRow.ticket_number == number,
                                                               AuditEventRow.kind == "priority_changed"))).scalars()
        assert [e.actor_id for e in changed] == ["sup-li"]
    # No change: a domain error on the page, nothing changes.
    same = await client.post(f"/console/tickets/{number}/priority",
                             data={"csrf_token": csrf, "priority": "紧急", "impact": "单用户"})
    assert same.status == 400 and "没有改动" in await same.text()
    # Without the CSRF token: refused, nothing changes.
    bare = await client.post(f"/console/tickets/{number}/priority", data={"priority": "咨询"})
    assert bare.status == 403 and (await ticket(client, number)).priority == "紧急"
    # Reassign through dispatch's command.
    moved = await client.post(f"/console/tickets/{number}/reassign",
                              data={"csrf_token": csrf, "person_id": "tech-zhang", "reason": "后台转派"},
                              allow_redirects=False)
    assert moved.status == 302
    assert (await ticket(client, number)).assignee_id == "tech-zhang"
    # Cancel.
    cancelled = await client.post(f"/console/tickets/{number}/cancel",
                                  data={"csrf_token": csrf, "reason": "客户已自行解决"}, allow_redirects=False)
    assert cancelled.status == 302 and (await ticket(client, number)).status.value == "cancelled"
    again = await client.post(f"/console/tickets/{number}/cancel", data={"csrf_token": csrf, "reason": "再取消"})
    assert again.status == 400 and "error" in await again.text()


async def test_a_store_supervisor_cannot_hand_work_to_another_store(client: TestClient) -> None:
    number = await report(client, "cust-x")
    async with runtime_of(client).sessions() as s:
        await s.execute(update(TicketRow).where(TicketRow.number == number).values(store_id="S03"))
        await s.commit()
    await sign_in(client, runtime_of(client), "sup-chen")
    csrf = await csrf_of(client, f"/console/tickets/{number}")
    resp = await client.post(f"/console/tickets/{number}/reassign",
                             data={"csrf_token": csrf, "person_id": "tech-wang", "reason": "x"})
    assert resp.status == 403
    assert (await ticket(client, number)).assignee_id != "tech-wang"


async def test_roles_without_actions_see_no_forms_and_are_refused(client: TestClient) -> None:
    number, _, _ = await closed_ticket(client)
    await sign_in(client, runtime_of(client), "qa-sun")
    page = await (await client.get(f"/console/tickets/{number}")).text()
    assert "审计记录完整" in page and f"/console/tickets/{number}/reopen" not in page
    csrf = await csrf_of(client, f"/console/tickets/{number}")
    resp = await client.post(f"/console/tickets/{number}/reopen", data={"csrf_token": csrf, "reason": "x"})
    assert resp.status == 403
    assert (await ticket(client, number)).status.value == "closed"
    assert any(e.ticket_number == number for e in await forbidden_events(client))


async def test_reopen_and_triage(client: TestClient) -> None:
    number, _, _ = await closed_ticket(client)
    await sign_in(client, runtime_of(client), "admin")
    csrf = await csrf_of(client, f"/console/tickets/{number}")
    resp = await client.post(f"/console/tickets/{number}/reopen", data={"csrf_token": csrf, "reason": "回访发现复发"},
                             allow_redirects=False)
    assert resp.status == 302
    assert (await ticket(client, number)).status.value in ("reopened", "dispatched")


async def test_triage_from_the_file(client: TestClient) -> None:
    number = await report(client, "cust-triage", "门锁坏了")
    assert (await ticket(client, number)).status.value == "triage"
    await sign_in(client, runtime_of(client), "admin")
    page = await (await client.get(f"/console/tickets/{number}")).text()
    assert f"/console/tickets/{number}/triage" in page
    csrf = await csrf_of(client, f"/console/tickets/{number}")
    bad = await client.post(f"/console/tickets/{number}/triage", data={"csrf_token": csrf, "category": "空调类"})
    assert bad.status == 400 and "空调类" in await bad.text()
    assert (await ticket(client, number)).status.value == "triage"
    done = await client.post(f"/console/tickets/{number}/triage", data={"csrf_token": csrf, "category": "机械类"},
                             allow_redirects=False)
    assert done.status == 302
    classified = await ticket(client, number)
    assert classified.category == "机械类" and classified.status.value != "triage"
