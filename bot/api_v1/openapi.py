"""The OpenAPI 3.1 document of /api/v1/, built from `ROUTES` and the pydantic models that validate
the requests (their `model_json_schema` are the components: one definition), and a plain
server-rendered page listing it at /api/v1/docs (no viewer, nothing fetched from a CDN)."""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bot.api_v1 import schemas
from bot.api_v1.auth import SCOPES
from bot.api_v1.problems import TITLES
from bot.api_v1.routes import ROUTES, Route
from storage.database import compact_json

REF = "#/components/schemas/{model}"
PROBLEM = {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}}


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"Problem": schemas.Problem}
    for spec in ROUTES:
        for model in (spec.body, spec.response):
            if model is not None:
                found[model.__name__] = model
    return list(found.values())


def _operation(spec: Route) -> dict[str, Any]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"{(\w+)}", spec.path)]
    params += [{"name": q.name, "in": "query", "required": False, "description": q.description, "schema": q.schema}
               for q in spec.query]
    if spec.method == "POST":
        params.append({"name": "Idempotency-Key", "in": "header", "required": False, "schema": {
            "type": "string", "maxLength": 255}, "description": "A retry with the same key and body gets the first "
                                                                "answer; another body: 422."})
    ok: dict[str, Any] = {"description": "OK" if spec.status == 200 else "Created"}
    if spec.response is not None:
        ok["content"] = {"application/json": {"schema": {"$ref": REF.format(model=spec.response.__name__)}}}
    responses: dict[str, Any] = {str(spec.status): ok}
    if spec.method == "PUT":
        responses["200" if spec.status != 200 else "201"] = {"description": "Updated" if spec.status != 200
                                                             else "Created", **({"content": ok["content"]}
                                                                                if "content" in ok else {})}
    for status in spec.errors:
        responses[str(status)] = {"description": TITLES.get(status, "Error"), "content": PROBLEM}
    op: dict[str, Any] = {"summary": spec.summary, "operationId": f"{spec.method.lower()}_{spec.handler.__name__}"
                          f"_{re.sub(r'[^a-z]+', '_', spec.path.lower()).strip('_')}",
                          "parameters": params, "responses": responses,
                          "security": [{"bearer": [spec.scope]}], "x-scope": spec.scope}
    if spec.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": REF.format(model=spec.body.__name__)}}}}
    return op


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    _, defs = models_json_schema([(m, "validation") for m in _models()], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for spec in ROUTES:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ticketbot API", "version": "1.0.0",
                 "description": "Tickets and master data for external systems. Errors are RFC 9457 problem "
                                "details. See docs/api.md."},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Scopes: " + ", ".join(SCOPES)}},
        },
    }


async def document_handler(request: web.Request) -> web.Response:
    return web.Response(text=compact_json(document()), content_type="application/json")


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{name}">{name}</a>'
    if "anyOf" in schema:
        return " | ".join(_schema_text(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_schema_text(schema.get('items', {}))}"
    if "enum" in schema:
        return " | ".join(html.escape(repr(v)) for v in schema["enum"])
    if "const" in schema:
        return html.escape(repr(schema["const"]))
    return html.escape(str(schema.get("format") or schema.get("type") or "any"))


@lru_cache(maxsize=1)
def docs_page() -> str:
    doc = document()
    out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>ticketbot API v1</title>",
           "<style>body{font:14px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
           "code,pre{background:#f4f4f4;padding:1px 4px}table{border-collapse:collapse}"
           "td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}"
           ".m{font-weight:bold;display:inline-block;width:4em}</style></head><body>",
           "<h1>ticketbot API v1</h1>",
           f"<p>{html.escape(doc['info']['description'])} The machine-readable document: "
           "<a href='/api/v1/openapi.json'>openapi.json</a> (OpenAPI 3.1). Send "
           "<code>Authorization: Bearer &lt;token&gt;</code>.</p><h2>Operations</h2>"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out.append(f"<h3 id='{op['operationId']}'><span class='m'>{method.upper()}</span>"
                       f"<code>{html.escape(path)}</code></h3><p>{html.escape(op['summary'])} — scope "
                       f"<code>{op['x-scope']}</code></p>")
            if op["parameters"]:
                out.append("<table><tr><th>parameter</th><th>in</th><th>type</th></tr>")
                for p in op["parameters"]:
                    out.append(f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
                               f"<td>{_schema_text(p['schema'])}</td></tr>")
                out.append("</table>")
            if "requestBody" in op:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                out.append(f"<p>Body: {_schema_text(schema)}</p>")
            codes = ", ".join(f"{code} {html.escape(r['description'])}" for code, r in op["responses"].items())
            out.append(f"<p>Answers: {codes}</p>")
    out.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        out.append(f"<h3 id='schema-{name}'>{name}</h3>")
        if schema.get("description"):
            out.append(f"<p>{html.escape(schema['description'])}</p>")
        required = set(schema.get("required", ()))
        out.append("<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>")
        for field_name, prop in schema.get("properties", {}).items():
            out.append(f"<tr><td><code>{html.escape(field_name)}</code></td><td>{_schema_text(prop)}</td>"
                       f"<td>{'yes' if field_name in required else ''}</td>"
                       f"<td>{html.escape(str(prop.get('description', '')))}</td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "".join(out)


async def docs_handler(request: web.Request) -> web.Response:
    return web.Response(text=docs_page(), content_type="text/html", charset="utf-8")
