"""Master data over API v1: PUT by natural key (201 created, 200 updated), GET one, GET a page in
key order; every write audited with the client as actor; bad records 422 naming the field."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.api_v1_support import register, sqlite_api  # noqa: F401
from tests.conftest import runtime_of

STORE = {"name": "浦东店", "address": "浦东新区 1 号", "lat": 31.2, "lng": 121.5}


async def test_upsert_read_and_list_each_kind(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "erp")
    puts = [
        ("/api/v1/stores/PD", STORE),
        ("/api/v1/customers/cust-erp-1", {"name": "李先生", "phones": ["138 0013 8111"], "store": "PD",
                                          "addresses": [{"label": "家", "text": "浦东 2 号"}]}),
        ("/api/v1/assets/AC-9", {"sn": "kfr-35gw/n8hr3", "customer_id": "cust-erp-1", "warranty_end": "2027-06-30"}),
        ("/api/v1/contracts/HT-1", {"customer_id": "cust-erp-1", "asset_ids": ["AC-9"], "level": "金牌",
                                    "valid_from": "2026-01-01", "valid_to": "2026-12-31"}),
        ("/api/v1/people/tech-erp", {"name": "赵师傅", "role": "technician", "store": "PD", "phone": "13900000001"}),
    ]
    for path, body in puts:
        resp = await sqlite_api.put(path, json=body, headers=auth)
        assert resp.status == 201, (path, await resp.text())
        again = await sqlite_api.put(path, json=body, headers=auth)
        assert again.status == 200 and (await again.json())["created"] is False
    customer = await (await sqlite_api.get("/api/v1/customers/cust-erp-1", headers=auth)).json()
    assert customer["phones"] == ["13800138111"] and customer["store"] == "PD"
    asset = await (await sqlite_api.get("/api/v1/assets/AC-9", headers=auth)).json()
    assert asset["sn"] == "KFR35GWN8HR3" and asset["warranty_end"] == "2027-06-30"
    contract = await (await sqlite_api.get("/api/v1/contracts/HT-1", headers=auth)).json()
    assert contract["asset_ids"] == ["AC-9"]
    person = await (await sqlite_api.get("/api/v1/people/tech-erp", headers=auth)).json()
    assert person["role"] == "technician" and person["store"] == "PD"
    # customers are not people of this resource
    assert (await sqlite_api.get("/api/v1/people/cust-erp-1", headers=auth)).status == 404
    listed = await (await sqlite_api.get("/api/v1/stores", headers=auth)).json()
    assert "PD" in [s["code"] for s in listed["items"]]


async def test_list_pages_in_key_order(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "erp")
    for i in range(5):
        assert (await sqlite_api.put(f"/api/v1/customers/c-page-{i}", json={"name": f"客户{i}"},
                                     headers=auth)).status == 201
    seen, cursor = [], None
    while True:
        page = await (await sqlite_api.get("/api/v1/customers", params={"limit": "2", **(
            {"cursor": cursor} if cursor else {})}, headers=auth)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [s for s in seen if s.startswith("c-page-")] == [f"c-page-{i}" for i in range(5)]


async def test_bad_records_name_the_field(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "erp")
    assert (await sqlite_api.put("/api/v1/stores/PD", json=STORE, headers=auth)).status == 201
    cases = [
        ("/api/v1/stores/X", {"name": "无坐标"}, "lat"),
        ("/api/v1/customers/c1", {"name": "张", "phones": ["12"]}, "phones.0"),
        ("/api/v1/customers/c1", {"name": "张", "store": "NOPE"}, "store"),
        ("/api/v1/assets/A1", {"vin": "LSVAM4187C2184840"}, "vin"),
        ("/api/v1/assets/A1", {"plate": "ABC"}, "plate"),
        ("/api/v1/contracts/H1", {"customer_id": "nobody", "level": "金", "valid_from": "2026-01-01",
                                  "valid_to": "2025-01-01"}, "valid_to"),
        ("/api/v1/people/p1", {"name": "钱", "role": "customer"}, "role"),
        ("/api/v1/people/p1", {"name": "钱", "role": "technician", "shoe": 42}, "shoe"),
    ]
    for path, body, field in cases:
        resp = await sqlite_api.put(path, json=body, headers=auth)
        assert resp.status == 422, (path, await resp.text())
        assert field in [e["field"] for e in (await resp.json())["errors"]], (path, await resp.text())


async def test_writes_are_audited_with_the_client_as_actor(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "erp")
    assert (await sqlite_api.put("/api/v1/stores/PD", json=STORE, headers=auth)).status == 201
    from sqlalchemy import text

    async with runtime_of(sqlite_api).engine.connect() as conn:
        rows = (await conn.execute(text("SELECT actor_id, payload FROM audit_events WHERE kind = "
                                        "'masterdata_upserted'"))).all()
    assert len(rows) == 1 and rows[0][0] == "api:erp" and '"PD"' in str(rows[0][1])
