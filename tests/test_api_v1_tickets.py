"""API v1 tickets over real HTTP: create (customer by phone, id, external key; asset; store), read,
list with filters and a cursor, transitions under the status lock, comments."""

from __future__ import annotations

import uuid

from aiohttp.test_utils import TestClient

from bot.api_v1.schemas import TicketOut
from core.model import TicketStatus
from tests.api_v1_support import api, new_ticket, register, sqlite_api  # noqa: F401
from tests.conftest import runtime_of
from tests.test_lifecycle_support import Person, in_progress, ticket
from tests.test_signoff import GOOD

PROBLEM = "application/problem+json"


async def test_create_returns_the_ticket_with_global_id_and_refs(api: TestClient) -> None:  # noqa: F811
    auth = await register(api, "yida")
    resp = await api.post("/api/v1/tickets", json=new_ticket("YD-100", store="S02", priority="紧急"), headers=auth)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    TicketOut.model_validate(body)  # the documented shape
    assert body["store"] == "S02" and body["priority"] == "紧急"
    assert body["external_refs"] == {"yida": "YD-100"}
    assert body["status"] in {s.value for s in TicketStatus}
    uuid.UUID(body["global_id"])
    read = await api.get(f"/api/v1/tickets/{body['number']}", headers=auth)
    assert (await read.json())["global_id"] == body["global_id"]  # stored, stable
    # the audit trail names the client's person as the one who registered it
    async with runtime_of(api).uow() as uow:
        events = await uow.audit_for_ticket(body["number"])
    created = next(e for e in events if e.kind == "ticket_created")
    assert created.actor_id == "api:yida" and created.payload["registered_by"] == "api:yida"
    assert any(e.kind == "external_ref_linked" and e.payload == {"system": "yida", "ref": "YD-100"} for e in events)


async def test_the_same_external_ref_returns_the_first_ticket(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "yida")
    first = await (await sqlite_api.post("/api/v1/tickets", json=new_ticket("YD-7"), headers=auth)).json()
    again = await sqlite_api.post("/api/v1/tickets", json=new_ticket("YD-7"), headers=auth)
    assert again.status == 200
    assert (await again.json())["number"] == first["number"]
    # another system may use the same id for its own ticket
    other = await register(sqlite_api, "k3")
    third = await sqlite_api.post("/api/v1/tickets", json=new_ticket("YD-7"), headers=other)
    assert third.status == 201 and (await third.json())["number"] != first["number"]


async def test_customer_by_phone_is_made_once_then_found_by_external_key(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "crm")
    body = new_ticket("C-1", phone="139 0013 9000")
    body["customer"] = {"phone": "13900139000", "external_key": "CRM-42", "name": "王女士"}
    first = await (await sqlite_api.post("/api/v1/tickets", json=body, headers=auth)).json()
    by_key = {**new_ticket("C-2"), "customer": {"external_key": "CRM-42"}}
    second = await (await sqlite_api.post("/api/v1/tickets", json=by_key, headers=auth)).json()
    assert second["customer_id"] == first["customer_id"]
    by_id = {**new_ticket("C-3"), "customer": {"id": first["customer_id"]}}
    assert (await (await sqlite_api.post("/api/v1/tickets", json=by_id, headers=auth)).json())["customer_id"] == \
        first["customer_id"]
    async with runtime_of(sqlite_api).uow() as uow:
        person = await uow.get_person(first["customer_id"])
    assert person is not None and person.name == "王女士" and person.phone == "13900139000"


async def test_unknown_customer_store_and_asset_name_the_field(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "crm")
    cases = [
        ({**new_ticket("X1"), "customer": {"external_key": "nobody"}}, "customer.external_key"),
        ({**new_ticket("X2"), "customer": {"id": "no-such-person"}}, "customer.id"),
        ({**new_ticket("X3"), "customer": {"phone": "12345"}}, "customer.phone"),
        (new_ticket("X4", store="NO-STORE"), "store"),
        ({**new_ticket("X6"), "customer": {}}, "customer"),
        (new_ticket("X7", priority="很急"), "priority"),
    ]
    for body, field in cases:
        resp = await sqlite_api.post("/api/v1/tickets", json=body, headers=auth)
        assert resp.status == 422, (field, await resp.text())
        assert resp.content_type == PROBLEM
        problem = await resp.json()
        assert field in [e["field"] for e in problem["errors"]], (field, problem)
    async with runtime_of(sqlite_api).uow() as uow:
        assert await uow.list_tickets(limit=5) == []


async def test_asset_by_serial_number_links_the_ticket(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "mes")
    put = await sqlite_api.put("/api/v1/assets/AC-1", json={"sn": "KFR-35GW/N8HR3", "brand": "格力"}, headers=auth)
    assert put.status == 201, await put.text()
    resp = await sqlite_api.post("/api/v1/tickets", json=new_ticket("M-1", asset="KFR35GW-N8HR3"), headers=auth)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["asset_id"] == "AC-1"
    # an asset master data does not know is kept as the ticket's subject, as in the chat
    unknown = await sqlite_api.post("/api/v1/tickets", json=new_ticket("M-2", phone="13800138002",
                                                                       asset="ZZ-99887766"), headers=auth)
    assert unknown.status == 201 and (await unknown.json())["asset_id"] is None
    async with runtime_of(sqlite_api).uow() as uow:
        made = await uow.get_ticket((await unknown.json())["number"])
    assert made is not None and made.subject == "ZZ-99887766"


async def test_list_filters_and_cursor(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "yida")
    numbers = []
    for i in range(5):
        body = await (await sqlite_api.post("/api/v1/tickets", json=new_ticket(f"L-{i}", phone=f"1380013800{i}"),
                                            headers=auth)).json()
        numbers.append(body["number"])
    seen: list[str] = []
    cursor = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await (await sqlite_api.get(f"/api/v1/tickets?{query}", headers=auth)).json()
        seen += [t["number"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(numbers))
    one = await (await sqlite_api.get("/api/v1/tickets", params={"customer": (await (await sqlite_api.get(
        f"/api/v1/tickets/{numbers[0]}", headers=auth)).json())["customer_id"]}, headers=auth)).json()
    assert [t["number"] for t in one["items"]] == [numbers[0]]
    assert one["items"][0]["external_refs"] == {"yida": "L-0"}
    for bad in ("status=nope", "updated_since=yesterday", "updated_since=2026-01-01T00:00:00", "limit=0",
                "cursor=%%%"):
        resp = await sqlite_api.get(f"/api/v1/tickets?{bad}", headers=auth)
        assert resp.status == 400 and resp.content_type == PROBLEM, bad
    later = await (await sqlite_api.get("/api/v1/tickets?updated_since=2999-01-01T00:00:00%2B08:00",
                                        headers=auth)).json()
    assert later["items"] == []


async def test_resolve_without_signature_is_409_audited_and_the_supervisor_told(api: TestClient) -> None:  # noqa: F811
    """CONTRACT: resolve → 409 problem+json when the customer has not signed; nothing changes."""
    auth = await register(api, "yida")
    number = await in_progress(api, "cust-api-lock", "tech-wang", photos=3)
    await Person(api, "tech-wang").say(f"完工 {number}")
    before = await ticket(api, number)
    assert before.status is TicketStatus.PENDING_SIGNOFF
    for name in ("resolve", "close"):
        resp = await api.post(f"/api/v1/tickets/{number}/transitions", json={"name": name}, headers=auth)
        assert resp.status == 409, await resp.text()
        assert resp.content_type == PROBLEM
        problem = await resp.json()
        assert problem["reason"] == "signature_missing" and problem["status"] == 409
        assert "签字" in problem["detail"]
    after = await ticket(api, number)
    assert (after.status, after.version) == (before.status, before.version)
    async with runtime_of(api).uow() as uow:
        refused = [e for e in await uow.audit_for_ticket(number) if e.kind == "status_lock_refused"]
    assert len(refused) == 2 and refused[0].actor_id == "api:yida"
    assert any("试图结案" in text for text in await Person(api, "sup-li").texts())
    # after the customer signs, the ticket is closed and resolve is acknowledged
    card = await Person(api, "cust-api-lock").last_card("signoff")
    await Person(api, "cust-api-lock").press(card["id"], "sign", GOOD)
    resp = await api.post(f"/api/v1/tickets/{number}/transitions", json={"name": "resolve"}, headers=auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "closed" and body["signed"] is True


async def test_illegal_transition_is_409_with_the_allowed_ones(sqlite_api: TestClient) -> None:  # noqa: F811
    auth = await register(sqlite_api, "yida")
    created = await (await sqlite_api.post("/api/v1/tickets", json=new_ticket("T-1"), headers=auth)).json()
    number = created["number"]
    for name in ("accept", "complete", "no_such_step"):
        resp = await sqlite_api.post(f"/api/v1/tickets/{number}/transitions", json={"name": name}, headers=auth)
        assert resp.status == 409, (name, await resp.text())
        problem = await resp.json()
        assert resp.content_type == PROBLEM and "cancel" in problem["allowed"], problem
    resp = await sqlite_api.post(f"/api/v1/tickets/{number}/transitions", json={"name": "cancel", "reason": "重复"},
                                 headers=auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "cancelled"
    missing = await sqlite_api.post("/api/v1/tickets/GD-NOPE/transitions", json={"name": "cancel"}, headers=auth)
    assert missing.status == 404 and missing.content_type == PROBLEM


async def test_comment_is_audited_and_told_to_the_assignee(api: TestClient) -> None:  # noqa: F811
    auth = await register(api, "yida")
    number = await in_progress(api, "cust-api-comment", "tech-wang")
    resp = await api.post(f"/api/v1/tickets/{number}/comments", json={"text": "客户改约下午三点"}, headers=auth)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["text"] == "客户改约下午三点"
    assert any("客户改约下午三点" in t for t in await Person(api, "tech-wang").texts())
    async with runtime_of(api).uow() as uow:
        assert any(e.kind == "comment_added" and e.actor_id == "api:yida" for e in await uow.audit_for_ticket(number))
    empty = await api.post(f"/api/v1/tickets/{number}/comments", json={"text": "   "}, headers=auth)
    assert empty.status == 422
