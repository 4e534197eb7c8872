"""The OpenAPI 3.1 document is generated from the models that validate requests (one definition),
covers every route, and the docs page lists it without fetching anything from elsewhere."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from bot.api_v1 import schemas
from bot.api_v1.routes import ROUTES
from tests.api_v1_support import sqlite_api  # noqa: F401


async def test_document_is_openapi_3_1_from_the_request_models(sqlite_api: TestClient) -> None:  # noqa: F811
    resp = await sqlite_api.get("/api/v1/openapi.json")  # public: it describes, it grants nothing
    assert resp.status == 200 and resp.content_type == "application/json"
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    components = doc["components"]["schemas"]
    # the component IS the model's schema (same properties, same required, extra forbidden)
    create = schemas.TicketCreate.model_json_schema(ref_template="#/components/schemas/{model}")
    assert components["TicketCreate"]["properties"] == create["properties"]
    assert components["TicketCreate"]["required"] == create["required"]
    assert components["TicketCreate"]["additionalProperties"] is False
    assert set(components["CustomerRef"]["properties"]) == {"id", "phone", "external_key", "name"}
    for spec in ROUTES:
        op = doc["paths"][spec.path][spec.method.lower()]
        assert op["x-scope"] == spec.scope
        if spec.body is not None:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[-1] in components
        if spec.method == "POST":
            assert "Idempotency-Key" in [p["name"] for p in op["parameters"]]
    post = doc["paths"]["/api/v1/tickets"]["post"]
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("TicketOut")
    assert "application/problem+json" in post["responses"]["422"]["content"]
    assert "/api/v1/tickets/{number}/transitions" in doc["paths"]
    for kind in ("customers", "assets", "contracts", "stores", "people"):
        assert {"put", "get"} <= set(doc["paths"][f"/api/v1/{kind}/{{key}}"])
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) == len(ROUTES)
    # every $ref resolves
    text = await resp.text()
    import re

    for name in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert name in components, name


async def test_docs_page_lists_operations_and_fields_self_contained(sqlite_api: TestClient) -> None:  # noqa: F811
    resp = await sqlite_api.get("/api/v1/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert "/api/v1/tickets/{number}/transitions" in page and "external_ref" in page
    assert "tickets:write" in page and "<script" not in page
    assert "http://" not in page and "https://" not in page.replace("https://spec.openapis.org", "")
