"""The hub over API v1 (issue 23), over real HTTP with a real receiver on loopback: the dashboard
(`GET /api/v1/hub/status`), redelivery, reconcile ("created there but not received here"), the
webhook series in /metrics, and attachments (kept apart from the technician's evidence)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.web.app import build_app
from core.hub import mappings
from core.lifecycle.photos import WORK, distinct_photos
from tests.api_v1_support import new_ticket, register
from tests.conftest import make_settings, runtime_of
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_lifecycle_support import Person
from tests.test_webhooks import _client, receiver, settled, store_of, subscribe, until  # noqa: F401

PROBLEM = "application/problem+json"
ADMIN = ["tickets:read", "tickets:write", "hub:admin", "hub:read"]
READER = {"Authorization": "Bearer admin-read-token"}


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    mappings.forget()
    mappings.install()  # a test elsewhere may have put its own body mapper in place
    yield
    mappings.forget()


@pytest.fixture
async def hub(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async for client in _client(database_url, tmp_path, api_token="admin-read-token"):
        yield client


def system(status: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in status["systems"] if s["client"] == name]
    assert found, status
    return found[0]


async def test_status_redeliver_and_metrics(hub: TestClient, receiver: WebhookReceiver) -> None:  # noqa: F811
    admin = await register(hub, "hubadmin", ADMIN)
    yida = await register(hub, "yida", ["tickets:write"])
    failing_sub, mes = await subscribe(hub, receiver, "mes", events=["ticket.created"], fail_always=True)
    erp_sub, _ = await subscribe(hub, receiver, "erp", events=["ticket.created"])
    created = await hub.post("/api/v1/tickets", json=new_ticket("YD-1"), headers=yida)
    assert created.status == 201, await created.text()
    await settled(hub, failing_sub.id, lambda d: d["attempts"] == 1 and d["status"] == "pending"
                  and d["last_status"] == 500)
    await settled(hub, erp_sub.id, lambda d: d["status"] == "delivered")
    resp = await hub.get("/api/v1/hub/status", headers=admin)
    assert resp.status == 200, await resp.text()
    status = await resp.json()
    failing, ok = system(status, "mes"), system(status, "erp")
    assert failing["success_rate"] == 0.0 and failing["pending"] == 1 and "HTTP 500" in str(failing["last_error"])
    assert ok["success_rate"] == 1.0 and ok["ok"] == 1 and ok["last_error"] is None
    assert status["anomaly_count"] >= 1
    assert status["anomalies"][0]["kind"] == "delivery_failing" and status["anomalies"][0]["system"] == "mes"
    # scopes: the API_TOKEN admin reader reads the dashboard; a ticket writer does not
    assert (await hub.get("/api/v1/hub/status", headers=READER)).status == 200
    denied = await hub.get("/api/v1/hub/status", headers=yida)
    assert denied.status == 403 and (await denied.json())["required_scope"] == "hub:read"
    assert (await hub.get("/api/v1/hub/status?days=0", headers=admin)).status == 400
    # /metrics (from loopback): deliveries by system and outcome, and what is still pending
    scraped = await (await hub.get("/metrics")).text()
    assert 'ticketbot_webhook_deliveries_total{client="erp",outcome="delivered"}' in scraped
    assert 'ticketbot_webhook_deliveries_total{client="mes",outcome="retry"}' in scraped
    assert 'ticketbot_webhook_pending{client="mes"} 1.0' in scraped
    # redelivery: bad requests first
    for bad, code in (({"delivery_id": 1, "failed_since": "2026-01-01T00:00:00+08:00"}, 422),
                      ({"failed_since": "2026-01-01T00:00:00"}, 422), ({}, 422), ({"delivery_id": 999999}, 404)):
        answer = await hub.post("/api/v1/hub/redeliver", json=bad, headers=admin)
        assert answer.status == code and answer.content_type == PROBLEM, (bad, await answer.text())
    assert (await hub.post("/api/v1/hub/redeliver", json={"delivery_id": 1}, headers=READER)).status == 403
    # the receiver is fixed; every failed delivery since an hour ago is sent again now (no backoff wait)
    mes.fail_always = False
    since = (runtime_of(hub).clock.now() - timedelta(hours=1)).isoformat()
    again = await hub.post("/api/v1/hub/redeliver", json={"failed_since": since, "client": "mes"}, headers=admin)
    assert again.status == 200 and (await again.json()) == {"redelivered": 1}
    await until(lambda: len(mes.events) == 1)
    delivered = await settled(hub, failing_sub.id, lambda d: d["status"] == "delivered")
    one = await hub.post("/api/v1/hub/redeliver", json={"delivery_id": delivered["id"]}, headers=admin)
    assert one.status == 200 and (await one.json()) == {"redelivered": 1}
    await until(lambda: mes.duplicates == 1)  # the same event id again: the receiver dedupes it
    await settled(hub, failing_sub.id, lambda d: d["status"] == "delivered" and d["attempts"] == 3)
    async with runtime_of(hub).uow() as uow:
        audited = await uow.hub().latest_audit("hub_redelivered")
    assert [a["payload"]["count"] for a in audited] == [1, 1] and audited[0]["actor_id"] == "api:hubadmin"
    healthy = system(await (await hub.get("/api/v1/hub/status", headers=admin)).json(), "mes")
    assert healthy["pending"] == 0 and "failing" not in healthy


async def test_reconcile_reports_refs_never_received(hub: TestClient) -> None:
    admin = await register(hub, "hubadmin", ADMIN)
    yida = await register(hub, "yida", ["tickets:write"])
    assert (await hub.post("/api/v1/tickets", json=new_ticket("YD-1"), headers=yida)).status == 201
    resp = await hub.post("/api/v1/hub/reconcile", json={"refs": ["YD-1", "YD-2", "YD-3", "YD-2"]}, headers=yida)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"system": "yida", "checked": 3, "unknown": ["YD-2", "YD-3"]}
    status = await (await hub.get("/api/v1/hub/status", headers=admin)).json()
    missing = system(status, "yida")["not_received"]
    assert missing["count"] == 2 and missing["refs"] == ["YD-2", "YD-3"]
    assert next(a for a in status["anomalies"] if a["kind"] == "not_received")["count"] == 2
    admin_chat = Person(hub, "admin")  # the chat's 中枢 状态 counts it too
    await admin_chat.say("中枢 状态")
    said = await admin_chat.last_text()
    assert "yida 创建但本系统未收到 2 张工单" in said and "YD-2、YD-3" in said, said
    # YD-2 arrives late (a retry of theirs): the dashboard counts only what is still missing
    assert (await hub.post("/api/v1/tickets", json=new_ticket("YD-2"), headers=yida)).status == 201
    status = await (await hub.get("/api/v1/hub/status", headers=admin)).json()
    assert system(status, "yida")["not_received"]["refs"] == ["YD-3"]
    # refs are per system: another system's YD-1 is not ours
    k3 = await register(hub, "k3", ["tickets:write"])
    assert (await (await hub.post("/api/v1/hub/reconcile", json={"refs": ["YD-1"]}, headers=k3)).json())[
        "unknown"] == ["YD-1"]
    bad: dict[str, Any]
    for bad in ({"refs": []}, {"refs": "YD-1"}, {"refs": ["x"], "extra": 1}):
        answer = await hub.post("/api/v1/hub/reconcile", json=bad, headers=yida)
        assert answer.status == 422 and answer.content_type == PROBLEM, bad
    assert (await hub.post("/api/v1/hub/reconcile", json={"refs": ["a"]}, headers=READER)).status == 403


def png(side: int = 80, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
async def small_limit(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    app = build_app(make_settings(database_url, tmp_path, api_token="admin-read-token",
                                  api_attachment_max_bytes=4096))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_attachments_are_stored_listed_audited_and_not_evidence(small_limit: TestClient) -> None:
    api = small_limit
    yida = await register(api, "yida", ["tickets:read", "tickets:write"])
    number = (await (await api.post("/api/v1/tickets", json=new_ticket("YD-9"), headers=yida)).json())["number"]
    image = png()
    url = f"/api/v1/tickets/{number}/attachments"
    resp = await api.post(url, data=image, params={"filename": "../../故障 照片.png"},
                          headers={**yida, "Content-Type": "image/png"})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["filename"] == "故障 照片.png" and body["content_type"] == "image/png" and body["size"] == len(image)
    pdf = b"%PDF-1.4 a small delivery note"
    second = await api.post(url, data=pdf, params={"filename": "送货单.pdf"},
                            headers={**yida, "Content-Type": "application/pdf"})
    assert second.status == 201 and (await second.json())["content_type"] == "application/pdf"
    same = await api.post(url, data=image, headers={**yida, "Content-Type": "image/png"})
    assert same.status == 200 and (await same.json())["sha256"] == body["sha256"]  # a retry: the first
    read = await (await api.get(f"/api/v1/tickets/{number}", headers=yida)).json()
    assert [a["filename"] for a in read["attachments"]] == ["故障 照片.png", "送货单.pdf"]
    assert read["attachments"][0]["by"] == "yida"
    runtime = runtime_of(api)
    assert (runtime.settings.data_dir / "attachments" / body["sha256"]).read_bytes() == image
    async with runtime.uow() as uow:
        photos = await uow.list_photos(number)
        events = [e for e in await uow.audit_for_ticket(number) if e.kind == "attachment_added"]
    assert {p.purpose for p in photos} == {"attachment"} and len(photos) == 2
    assert distinct_photos(photos, purpose=WORK, since=None) == 0  # never the technician's evidence
    assert len(events) == 2 and events[0].actor_id == "api:yida"
    # bad input
    too_big = await api.post(url, data=b"x" * 5000, headers={**yida, "Content-Type": "application/octet-stream"})
    assert too_big.status == 413 and too_big.content_type == PROBLEM
    empty = await api.post(url, data=b"", headers=yida)
    assert empty.status == 422
    missing = await api.post("/api/v1/tickets/GD-NOPE/attachments", data=image, headers=yida)
    assert missing.status == 404
    reader_only = await register(api, "viewer", ["tickets:read"])
    assert (await api.post(url, data=image, headers=reader_only)).status == 403
