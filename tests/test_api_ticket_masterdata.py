"""CONTRACT: `GET /api/tickets/{number}` carries `store`, `customer` (phone masked), `asset`, `contract`
and `location`, each null when unknown; every key it had before stays."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import build_app
from tests.conftest import make_settings, runtime_of
from tests.playground_client import PlaygroundUser
from tests.test_intake_prefill import HOME, seed, ticket_of, today

OLD_KEYS = {"number", "status", "status_label", "category", "subject", "description", "priority", "impact",
            "customer_id", "assignee_id", "needs_review", "site", "created_at", "updated_at", "first_response_at",
            "accepted_at", "closed_at", "response_due", "resolution_due", "data", "audit"}
NEW_KEYS = {"store", "customer", "asset", "contract", "location"}


@pytest.fixture
async def client(tmp_path: Path) -> Any:
    settings = make_settings(f"sqlite:///{tmp_path / 'ticketbot.db'}", tmp_path)
    async with TestClient(TestServer(build_app(settings))) as c:
        yield c


async def detail(client: TestClient, number: str) -> dict[str, Any]:
    resp = await client.get(f"/api/tickets/{number}")
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_a_prefilled_ticket_shows_its_master_data(client: TestClient) -> None:
    await seed(client)
    customer = PlaygroundUser(client, "C001")
    await customer.say("空调 KFR35GW-N8HR3 不制冷")
    ticket = await ticket_of(client, customer)
    body = await detail(client, ticket.number)
    assert set(body) >= OLD_KEYS | NEW_KEYS
    assert body["store"] == {"code": "S09", "name": "张江二店", "address": "上海市浦东新区碧波路 500 号"}
    assert body["customer"] == {"id": "C001", "name": "王女士", "phone": "138****5678"}
    warranty_end = (today() + timedelta(days=300)).isoformat()
    assert body["asset"] == {"id": "AC-001", "sn": "KFR35GWN8HR3", "plate": None, "vin": None, "brand": "格力",
                             "model": "KFR-35GW", "warranty_end": warranty_end, "in_warranty": True}
    assert body["contract"] == {"number": "HT-001", "level": "金牌",
                                "valid_from": (today() - timedelta(days=10)).isoformat(),
                                "valid_to": (today() + timedelta(days=355)).isoformat(), "valid": True}
    assert body["location"] == {"lat": HOME[0], "lng": HOME[1], "address": "上海市浦东新区张江路 200 弄 5 号",
                                "source": "customer_address"}
    raw = await (await client.get(f"/api/tickets/{ticket.number}")).text()
    assert "13812345678" not in raw and "02161234567" not in raw  # no full phone anywhere in the answer


async def test_what_master_data_does_not_know_is_null(client: TestClient) -> None:
    customer = PlaygroundUser(client, "cust-plain")
    await customer.say("底盘有异响")
    ticket = await ticket_of(client, customer)
    body = await detail(client, ticket.number)
    assert set(body) >= OLD_KEYS | NEW_KEYS
    assert body["store"] is None and body["asset"] is None and body["contract"] is None
    assert body["location"] is None
    assert body["customer"] == {"id": "cust-plain", "name": "客户lain", "phone": None}


async def test_an_expired_warranty_and_contract_read_as_of_today(client: TestClient) -> None:
    """The records as they are now: an import that moves the warranty end shows at once."""
    await seed(client)
    customer = PlaygroundUser(client, "C001")
    await customer.say("空调 KFR35GWN8HR3 不制冷")
    ticket = await ticket_of(client, customer)
    rt = runtime_of(client)
    async with rt.uow() as uow:
        md = uow.masterdata()
        asset = await md.get_asset("AC-001")
        contract = await md.get_contract("HT-001")
        assert asset is not None and contract is not None
        from dataclasses import replace

        await md.upsert_asset(replace(asset, warranty_end=today() - timedelta(days=1)))
        await md.upsert_contract(replace(contract, valid_to=today() - timedelta(days=1)))
        await uow.commit()
    body = await detail(client, ticket.number)
    assert body["asset"]["in_warranty"] is False
    assert body["contract"]["valid"] is False


async def test_an_unknown_ticket_is_404(client: TestClient) -> None:
    resp = await client.get("/api/tickets/GD-20200101-9999")
    assert resp.status == 404
