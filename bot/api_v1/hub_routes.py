"""The hub's own API v1 routes (issue 23; docs/api.md#field-mappings, #hub-dashboard, #attachments):

- field mappings per client: `PUT/GET /mappings/{client}`, `POST /mappings/{client}/rollback`
  (versioned in config_versions through core/hub/mappings.py; `dry_run` checks without saving);
- the dashboard: `GET /hub/status`, `POST /hub/redeliver`, and `POST /hub/reconcile`, where a
  system names the refs it created and hears which never reached us (they are the dashboard's
  "created there but not received here" anomaly until they arrive);
- attachments: `POST /tickets/{number}/attachments` (raw bytes), stored content-addressed beside the
  photos as their own kind (`attachment`), never counted as the technician's evidence.

Scopes: `hub:read` reads mappings and the dashboard (the API_TOKEN admin reader has it), `hub:admin`
changes mappings and redelivers; reconcile and attachments are the system's own ticket writes
(`tickets:write`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.api_v1.problems import ProblemError
from bot.api_v1.routes import Call, Query, json_response, route
from bot.api_v1.schemas import Strict
from bot.chat.hub import RECONCILE_KIND, not_received
from bot.rules.rulebook import stored_rules
from core.hub import mappings
from core.lifecycle.photos import PhotoRecord, image_format
from storage.webhook_store import SqlWebhookStore

ATTACHMENT_KIND = "attachment_added"
ATTACHMENT_PURPOSE = "attachment"  # a photos row of its own kind: evidence counts only "work"
ATTACHMENT_FOLDER = "attachments"
MAX_REFS = 1000
KEPT_UNKNOWN = 100  # unknown refs kept per reconcile report (the count is exact)
TOP = 5
FILENAME = re.compile(r"[^\w.\-() \u4e00-\u9fff]+")


# --- models (request bodies validated, and the OpenAPI components) ---
class MappingPut(Strict):
    """The mapping as YAML/JSON text (`source`, errors name its lines) or as an object (`mapping`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)  # YAML's indentation is meaning
    source: str | None = Field(default=None, max_length=mappings.MAX_SOURCE)
    mapping: dict[str, Any] | None = None
    dry_run: bool = Field(default=False, description="Check and show the diff (and `sample` mapped); save nothing.")
    sample: dict[str, Any] | None = Field(default=None, description="A body of theirs (ticket create) or one of "
                                                                    "our webhook bodies, to map in a dry run.")
    note: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _one(self) -> MappingPut:
        if (self.source is None) == (self.mapping is None):
            raise ValueError("give exactly one of source, mapping")
        return self


class MappingRollback(Strict):
    version: int = Field(ge=1)


class MappingOut(BaseModel):
    client: str
    version: int | None
    mapping: dict[str, Any]
    source: str | None = None
    diff: str | None = Field(default=None, description="Unified diff from the previous version's text.")
    dry_run: bool = False
    result: dict[str, Any] | None = Field(default=None, description="The sample mapped (dry run).")
    history: list[dict[str, Any]] | None = None


class RedeliverRequest(Strict):
    delivery_id: int | None = Field(default=None, ge=1)
    failed_since: datetime | None = Field(default=None, description="ISO 8601 with an offset.")
    client: str | None = Field(default=None, max_length=48, description="Only this system's (with failed_since).")

    @model_validator(mode="after")
    def _one(self) -> RedeliverRequest:
        if (self.delivery_id is None) == (self.failed_since is None):
            raise ValueError("give exactly one of delivery_id, failed_since")
        if self.failed_since is not None and self.failed_since.tzinfo is None:
            raise ValueError("failed_since needs an offset, e.g. 2026-12-06T08:00:00+08:00")
        return self


class RedeliverOut(BaseModel):
    redelivered: int


class ReconcileRequest(Strict):
    refs: list[str] = Field(min_length=1, max_length=MAX_REFS, description="Ids of tickets the caller created "
                                                                           "(its external_ref of each).")


class ReconcileOut(BaseModel):
    system: str
    checked: int
    unknown: list[str] = Field(description="Refs no ticket here carries: sent but never received.")


class HubStatus(BaseModel):
    since: str
    systems: list[dict[str, Any]]
    anomalies: list[dict[str, Any]] = Field(description="TOP5, oldest first.")
    anomaly_count: int


class AttachmentOut(BaseModel):
    number: str
    sha256: str
    filename: str
    content_type: str
    size: int
    by: str
    at: str


# --- field mappings ---
async def _categories(uow: Any) -> list[str]:
    return [c.name for c in await stored_rules(uow)]


def _client_name(call: Call) -> str:
    return call.request.match_info["client"].strip()


async def _known_client(uow: Any, client: str) -> None:
    if await uow.hub().client(client) is None:
        raise ProblemError(404, "not_found", f"no API client named {client}")


def _rejected(error: mappings.MappingRejected) -> ProblemError:
    return ProblemError(422, "mapping_rejected", error.user_message, errors=[
        {"field": f"line {line}" if line else "(mapping)", "line": line, "message": message}
        for line, message in error.problems])


def _saved(client: str, version: int, mapping: mappings.FieldMapping, source: str, before: str) -> dict[str, Any]:
    return {"client": client, "version": version, "mapping": mapping.to_dict(), "source": source,
            "diff": mappings.diff(before, source, before_name="previous", after_name=f"v{version}")}


@route("PUT", "/mappings/{client}", scope="hub:admin", summary="Set a system's field mapping (a new version; "
       "`dry_run` checks it, shows the diff and maps `sample`, saving nothing); 422 names the lines at fault",
       body=MappingPut, response=MappingOut, errors=(400, 401, 403, 404, 413, 422, 429))
async def put_mapping(call: Call) -> web.Response:
    body: MappingPut = call.body
    client = _client_name(call)
    source = body.source if body.source is not None else json.dumps(body.mapping, ensure_ascii=False, indent=2)
    runtime = call.runtime
    async with runtime.uow() as uow:
        await _known_client(uow, client)
        categories = await _categories(uow)
        before = await mappings.current(uow, client)
        try:
            if body.dry_run:
                mapping = mappings.parse(client, source, categories=categories)
                result = mappings.dry_run(mapping, body.sample) if body.sample is not None else None
                return json_response({"client": client, "version": before.version if before else None,
                                      "mapping": mapping.to_dict(), "dry_run": True, "result": result,
                                      "diff": mappings.diff(before.source if before else "", source)})
            version, mapping = await mappings.save(uow, client, source, categories=categories, actor_id=call.actor.id,
                                                   at=runtime.clock.now(), note=body.note)
        except mappings.MappingRejected as error:
            raise _rejected(error) from None
        await uow.commit()
    return json_response(_saved(client, version, mapping, source, before.source if before else ""))


@route("GET", "/mappings/{client}", scope="hub:read", summary="A system's field mapping (the newest, or "
       "`version`) and its history", response=MappingOut, errors=(400, 401, 403, 404, 429),
       query=(Query("version", "A version from the history", {"type": "integer", "minimum": 1}),))
async def get_mapping(call: Call) -> web.Response:
    client = _client_name(call)
    wanted = call.request.query.get("version")
    if wanted is not None and not wanted.isdigit():
        raise ProblemError(400, "bad_query", "version must be a number", errors=[{"field": "version",
                                                                                  "message": "a number"}])
    async with call.runtime.uow() as uow:
        stored = (await mappings.version_of(uow, client, int(wanted)) if wanted
                  else await mappings.current(uow, client))
        history = await mappings.history(uow, client)
    if stored is None:
        missing = f"{client} has no field mapping" + (f" version {wanted}" if wanted else "")
        raise ProblemError(404, "not_found", missing)
    return json_response({"client": client, "version": stored.version, "source": stored.source,
                          "mapping": stored.mapping.to_dict(), "history": history})


@route("POST", "/mappings/{client}/rollback", scope="hub:admin", summary="Make an earlier version of a "
       "system's mapping the newest (checked again)", body=MappingRollback, response=MappingOut,
       errors=(400, 401, 403, 404, 422, 429))
async def rollback_mapping(call: Call) -> web.Response:
    body: MappingRollback = call.body
    client = _client_name(call)
    runtime = call.runtime
    async with runtime.uow() as uow:
        await _known_client(uow, client)
        before = await mappings.current(uow, client)
        if await mappings.version_of(uow, client, body.version) is None:
            raise ProblemError(404, "not_found", f"{client} has no mapping version {body.version}")
        try:
            version, mapping = await mappings.rollback(uow, client, body.version, categories=await _categories(uow),
                                                       actor_id=call.actor.id, at=runtime.clock.now())
        except mappings.MappingRejected as error:
            raise _rejected(error) from None
        stored = await mappings.version_of(uow, client, version)
        await uow.commit()
    assert stored is not None
    return json_response(_saved(client, version, mapping, stored.source, before.source if before else ""))


# --- the dashboard ---
def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def anomalies(systems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for system in systems:
        for failing in system.get("failing", []):
            found.append({"kind": "delivery_failing", "system": system["client"], "since": failing["since"],
                          "subscription": failing["subscription"], "detail": failing["last_error"]})
        if system.get("failed"):
            found.append({"kind": "dead_letters", "system": system["client"], "count": system["failed"],
                          "since": system.get("last_error_at")})
        missing = system.get("not_received")
        if missing:
            found.append({"kind": "not_received", "system": system["client"], "count": missing["count"],
                          "refs": missing["refs"], "since": missing["reported_at"]})
    found.sort(key=lambda a: a["since"].timestamp() if isinstance(a["since"], datetime) else float("inf"))
    return found


@route("GET", "/hub/status", scope="hub:read", summary="Per system: webhook success rate, deliveries "
       "ok/pending/failed, the last error, refs it created that never arrived; anomaly TOP5",
       response=HubStatus, errors=(400, 401, 403, 429),
       query=(Query("days", "1–90, default 7", {"type": "integer", "minimum": 1, "maximum": 90}),))
async def hub_status(call: Call) -> web.Response:
    text = call.request.query.get("days", "7")
    if not text.isdigit() or not 1 <= int(text) <= 90:
        raise ProblemError(400, "bad_query", "days must be 1–90", errors=[{"field": "days", "message": "1–90"}])
    since = call.runtime.clock.now() - timedelta(days=int(text))
    systems = await SqlWebhookStore(call.runtime.sessions, call.runtime.clock).health(since)
    async with call.runtime.uow() as uow:
        missing = await not_received(uow)
    by_name = {s["client"]: s for s in systems}
    for system, report in missing.items():
        entry = by_name.get(system)
        if entry is None:
            entry = by_name[system] = {"client": system, "subscriptions": [], "ok": 0, "pending": 0, "failed": 0,
                                       "attempts": 0, "succeeded": 0, "success_rate": None, "last_error": None,
                                       "last_error_at": None}
        entry["not_received"] = report
    ordered = sorted(by_name.values(), key=lambda s: s["client"])
    found = anomalies(ordered)

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return _iso(value)

    return json_response({"since": since.isoformat(), "systems": plain(ordered), "anomalies": plain(found[:TOP]),
                          "anomaly_count": len(found)})


@route("POST", "/hub/redeliver", scope="hub:admin", summary="Send one webhook delivery again, or every failed "
       "one since a time (optionally of one system)", body=RedeliverRequest, response=RedeliverOut,
       errors=(400, 401, 403, 404, 409, 422, 429))
async def hub_redeliver(call: Call) -> web.Response:
    body: RedeliverRequest = call.body
    runtime = call.runtime
    store = SqlWebhookStore(runtime.sessions, runtime.clock)
    if body.delivery_id is not None:
        if not await store.delivery_exists(body.delivery_id):
            raise ProblemError(404, "not_found", f"no delivery {body.delivery_id}")
        if not await store.redeliver(body.delivery_id):
            raise ProblemError(409, "in_flight", f"delivery {body.delivery_id} is being sent; try again shortly")
        count = 1
    else:
        assert body.failed_since is not None
        count = await store.redeliver_failed(body.failed_since, client=body.client)
    runtime.webhooks.wake.set()
    async with runtime.uow() as uow:
        await uow.append_audit(kind="hub_redelivered", actor_id=call.actor.id, at=runtime.clock.now(),
                               ticket_number=None, payload={"delivery_id": body.delivery_id, "count": count,
                                                            "failed_since": _iso(body.failed_since),
                                                            "client": body.client})
        await uow.commit()
    return json_response({"redelivered": count})


@route("POST", "/hub/reconcile", scope="tickets:write", summary="Name the refs you created; hear which never "
       "reached us (shown on the dashboard until they arrive)", body=ReconcileRequest, response=ReconcileOut,
       errors=(400, 401, 403, 413, 422, 429))
async def hub_reconcile(call: Call) -> web.Response:
    body: ReconcileRequest = call.body
    system = call.principal.name
    refs = list(dict.fromkeys(r.strip() for r in body.refs if r.strip()))
    runtime = call.runtime
    async with runtime.uow() as uow:
        known = await uow.hub().known_refs(system, refs)
        unknown = [r for r in refs if r not in known]
        await uow.append_audit(kind=RECONCILE_KIND, actor_id=call.actor.id, at=runtime.clock.now(),
                               ticket_number=None, payload={"system": system, "checked": len(refs),
                                                            "unknown_count": len(unknown),
                                                            "unknown": unknown[:KEPT_UNKNOWN]})
        await uow.commit()
    return json_response({"system": system, "checked": len(refs), "unknown": unknown})


# --- attachments ---
def _filename(text: str | None) -> str:
    name = FILENAME.sub("_", os.path.basename((text or "").replace("\\", "/"))).strip(" .")[:100]
    return name or "attachment"


def _write(folder: Path, data: bytes, digest: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / digest
    if not final.exists():
        fd, temp = tempfile.mkstemp(prefix=".incoming-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, final)  # same hash, same bytes: atomic and harmless when raced
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
    return f"{ATTACHMENT_FOLDER}/{digest}"


async def attachments_of(uow: Any, number: str) -> list[dict[str, Any]]:
    return [{"number": number, **{k: e.payload.get(k) for k in ("sha256", "filename", "content_type", "size")},
             "by": e.payload.get("system"), "at": e.at.isoformat()}
            for e in await uow.audit_for_ticket(number) if e.kind == ATTACHMENT_KIND]


@route("POST", "/tickets/{number}/attachments", scope="tickets:write", summary="Attach a file (the raw bytes "
       "as the body, its type as Content-Type, `filename` in the query); the same bytes again: 200 with the "
       "first; over API_ATTACHMENT_MAX_BYTES: 413. Not the technician's evidence.", response=AttachmentOut,
       status=201, errors=(401, 403, 404, 413, 422, 429),
       query=(Query("filename", "The file's name, e.g. 故障照片.jpg"),))
async def add_attachment(call: Call) -> web.Response:
    request, runtime = call.request, call.runtime
    limit = runtime.settings.api_attachment_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ProblemError(413, "too_large", f"attachment over {limit} bytes", limit=limit)
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.read(65_536):
        total += len(chunk)
        if total > limit:
            raise ProblemError(413, "too_large", f"attachment over {limit} bytes", limit=limit)
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise ProblemError(422, "validation", "the attachment is empty", errors=[{"field": "(body)",
                                                                                  "message": "empty"}])
    number = request.match_info["number"].strip().upper()
    digest = hashlib.sha256(data).hexdigest()
    kind = image_format(data)
    declared = request.headers.get("Content-Type", "").split(";")[0].strip()[:100]
    content_type = f"image/{kind}" if kind else (declared or "application/octet-stream")
    filename = _filename(request.query.get("filename"))
    async with runtime.uow() as uow:
        if await uow.get_ticket(number) is None:
            raise ProblemError(404, "not_found", f"ticket {number} not found")
        for existing in await attachments_of(uow, number):
            if existing["sha256"] == digest:
                return json_response(existing, 200)
        path = await asyncio.to_thread(_write, runtime.settings.data_dir / ATTACHMENT_FOLDER, data, digest)
        now = runtime.clock.now()
        await uow.add_photo(PhotoRecord(ticket_number=number, uploader_id=call.actor.id, sha256=digest, path=path,
                                        size=len(data), purpose=ATTACHMENT_PURPOSE, created_at=now))
        payload = {"system": call.principal.name, "sha256": digest, "filename": filename,
                   "content_type": content_type, "size": len(data), "path": path}
        await uow.append_audit(kind=ATTACHMENT_KIND, actor_id=call.actor.id, at=now, ticket_number=number,
                               payload=payload)
        await uow.commit()
    return json_response({"number": number, "sha256": digest, "filename": filename, "content_type": content_type,
                          "size": len(data), "by": call.principal.name, "at": now.isoformat()}, 201)
