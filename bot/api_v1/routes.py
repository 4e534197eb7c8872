"""The /api/v1/ routes. Each route is declared once (`ROUTES`): its method, path, scope, request and
response models; the handler wrapper authenticates, rate-limits, checks the scope, reads and
validates the body with the request model, and the OpenAPI document is built from the same table.

Writes go through core commands (core/hub/api.py) or, for master data, through `uow.masterdata()`
with an audit event; the actor is the client's person (`api:<name>`, role admin)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot import metrics
from bot.api_v1 import schemas
from bot.api_v1.auth import Authenticator, Principal, RateLimiter
from bot.api_v1.problems import ProblemError, problem_body, problem_response, validation_problem
from bot.runtime import Runtime
from core.errors import Conflict, IllegalTransition, InvalidInput, NotAllowed, NotFound, TicketbotError
from core.hub import mappings
from core.hub.api import (
    ApiComment,
    ApiCreateTicket,
    ApiTransition,
    HubOutcome,
    Idempotency,
    KeyTaken,
    global_id,
)
from core.lifecycle.signoff import is_signed
from core.masterdata.identifiers import normalise_phone, normalise_plate, normalise_sn, normalise_vin
from core.masterdata.model import (
    Address,
    AssetRecord,
    ContractRecord,
    CustomerRecord,
    PersonRecord,
    StoreRecord,
)
from core.model import Person, Role, Ticket, TicketStatus
from storage.api_store import StoredKey
from storage.database import compact_json

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
MAX_KEY = 255
PURGE_EVERY_S = 600.0
Handler = Callable[["Call"], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # aiohttp form, {param}
    handler: Handler
    scope: str
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: tuple[Query, ...] = ()
    errors: tuple[int, ...] = ()
    mapped: bool = False  # the body is in the client's own field names (its field mapping applies)


ROUTES: list[Route] = []


def route(method: str, path: str, *, scope: str, summary: str, body: type[BaseModel] | None = None,
          response: type[BaseModel] | None = None, status: int = 200, query: tuple[Query, ...] = (),
          errors: tuple[int, ...] = (), mapped: bool = False) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append(Route(method, PREFIX + path, fn, scope, summary, body, response, status, query, errors,
                            mapped))
        return fn

    return register


@dataclass(slots=True)
class Call:
    """One authenticated request: who, the validated body (if any), the raw JSON it came from."""

    request: web.Request
    runtime: Runtime
    principal: Principal
    body: Any = None
    data: Any = None

    @property
    def actor(self) -> Person:
        if self.principal.person is None:
            raise ProblemError(403, "scope", "this token reads only")
        return self.principal.person


class ApiV1:
    """The per-app state: authentication, rate limits, idempotency settings."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.auth = Authenticator(runtime)
        self.limiter = RateLimiter(runtime.settings.api_rate_limit_per_minute)
        self.key_ttl = timedelta(hours=runtime.settings.api_idempotency_hours)
        self.max_body = runtime.settings.api_max_body_bytes
        self._purged_at = 0.0

    async def purge_expired_keys(self) -> None:
        """Expired Idempotency-Keys go at most every PURGE_EVERY_S, from the request that notices
        (one DELETE on the expiry index; a key reused after expiry is replaced by its claim anyway)."""
        now = time.monotonic()
        if now - self._purged_at < PURGE_EVERY_S:
            return
        self._purged_at = now
        async with self.runtime.uow() as uow:
            await uow.hub().purge_expired_keys(self.runtime.clock.now())
            await uow.commit()

    def wrap(self, spec: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            principal = await self.auth.principal(request.headers.get("Authorization", ""))
            self.limiter.take(principal.name)
            principal.require(spec.scope)
            call = Call(request, self.runtime, principal)
            if spec.body is not None:
                call.data = await self.read_json(request)
                if spec.mapped and (mapping := await self.mapping(principal.name)) is not None:
                    call.data = mapping.theirs_to_ours(call.data)  # their names → ours, then validated
                try:
                    call.body = spec.body.model_validate(call.data)
                except ValidationError as error:
                    raise validation_problem(error) from None
            return await spec.handler(call)

        return handle

    async def mapping(self, client: str) -> mappings.FieldMapping | None:
        """The client's field mapping (core/hub/mappings.py), cached a few seconds per process."""

        async def read() -> mappings.StoredMapping | None:
            async with self.runtime.uow() as uow:
                return await mappings.current(uow, client)

        return await mappings.cached(client, read)

    async def read_json(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > self.max_body:
            raise ProblemError(413, "too_large", f"body over {self.max_body} bytes", limit=self.max_body)
        # Read to the end (a read returns what has arrived so far), counting as it comes.
        chunks: list[bytes] = []
        total = 0
        while chunk := await request.content.read(65_536):
            total += len(chunk)
            if total > self.max_body:
                raise ProblemError(413, "too_large", f"body over {self.max_body} bytes", limit=self.max_body)
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise ProblemError(400, "bad_json", f"the body is not JSON: {str(error)[:100]}") from None
        if not isinstance(data, dict):
            raise ProblemError(400, "bad_json", "the body must be a JSON object")
        return data


def _state(request: web.Request) -> ApiV1:
    return request.app[API_V1]


API_V1 = web.AppKey("api_v1", ApiV1)


# --- answers ---
def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=compact_json(body), content_type="application/json", headers=headers)


def ticket_json(ticket: Ticket, refs: dict[str, str]) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"number": ticket.number, "global_id": global_id(ticket), "status": ticket.status.value,
            "status_label": ticket.status.label, "description": ticket.description, "category": ticket.category,
            "priority": ticket.priority, "impact": ticket.impact, "customer_id": ticket.customer_id,
            "store": ticket.store_id, "asset_id": ticket.asset_id, "assignee_id": ticket.assignee_id,
            "signed": is_signed(ticket), "created_at": ticket.created_at.isoformat(),
            "updated_at": ticket.updated_at.isoformat(), "closed_at": iso(ticket.closed_at), "external_refs": refs}


def render(path: str) -> Callable[[HubOutcome], tuple[int, str]]:
    """The answer of a hub outcome: a ticket, a comment or (409) the status lock's problem."""

    def answer(outcome: HubOutcome) -> tuple[int, str]:
        if outcome.problem is not None:
            problem = dict(outcome.problem)
            detail = str(problem.pop("detail"))
            return outcome.status, compact_json(problem_body(outcome.status, "status_lock", detail, path, **problem))
        if outcome.comment is not None:
            return outcome.status, compact_json({"number": outcome.ticket.number, **outcome.comment})
        return outcome.status, compact_json(ticket_json(outcome.ticket, outcome.external_refs))

    return answer


def _replayed(stored: StoredKey) -> web.Response:
    problem = stored.status >= 400
    return web.Response(status=stored.status, text=stored.body,
                        content_type="application/problem+json" if problem else "application/json",
                        headers={"Idempotent-Replayed": "true"})


def _request_hash(call: Call) -> str:
    canonical = json.dumps(call.data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{call.request.method} {call.request.path}\n{canonical}".encode()).hexdigest()


def _check_same(stored: StoredKey, digest: str) -> web.Response:
    if stored.request_hash != digest:
        raise ProblemError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used with another request body or path",
                           errors=[{"field": "Idempotency-Key", "message": "used with another request"}])
    return _replayed(stored)


async def _stored(call: Call, key: str) -> StoredKey | None:
    async with call.runtime.uow() as uow:
        stored = await uow.hub().stored_key(call.principal.name, key)
    now = call.runtime.clock.now()
    return stored if stored is not None and stored.expires_at > now and stored.status else None


async def _handle(call: Call, command: object) -> HubOutcome:
    """The command in a member of the group commit on SQLite (as the playground's messages: requests
    arriving together share one COMMIT, each answered after it); its own transaction on PostgreSQL.
    A failure undoes only this request's savepoint."""
    async with call.runtime.sessions.shared_transaction():
        outcome: HubOutcome = await call.runtime.service.handle(command, call.actor)
    return outcome


async def execute(call: Call, make: Callable[[Idempotency | None], object]) -> web.Response:
    """Run a hub command once per Idempotency-Key: a known key replays its first answer (422 with
    another body), a new one is claimed inside the command's transaction."""
    key = call.request.headers.get("Idempotency-Key")
    idem: Idempotency | None = None
    digest = ""
    if key is not None:
        key = key.strip()
        if not key or len(key) > MAX_KEY or not key.isprintable():
            raise ProblemError(400, "bad_idempotency_key", f"Idempotency-Key must be 1–{MAX_KEY} printable characters")
        digest = _request_hash(call)
        await _state(call.request).purge_expired_keys()
        # No read of the key first: the command claims it as its first statement (a retry costs one
        # rolled-back savepoint, a first request no extra transaction).
        idem = Idempotency(call.principal.name, key, digest, call.runtime.clock.now() + _state(call.request).key_ttl,
                           render(call.request.path))
    try:
        try:
            outcome: HubOutcome = await _handle(call, make(idem))
        except Conflict as race:
            if race.data.get("field") != "external_ref" or isinstance(race, KeyTaken):
                raise
            # Another request made the ticket of this external_ref meanwhile (rolled back here):
            # once more, and it is found.
            outcome = await _handle(call, make(idem))
    except KeyTaken:
        assert key is not None
        stored = await _stored(call, key)
        if stored is None:  # expired between the two reads: practically never
            raise ProblemError(409, "idempotency_conflict", "retry the request") from None
        return _check_same(stored, digest)
    status, body = render(call.request.path)(outcome)
    return web.Response(status=status, text=body,
                        content_type="application/problem+json" if status >= 400 else "application/json")


# --- tickets ---
@route("POST", "/tickets", scope="tickets:write", summary="Create a ticket (idempotent with Idempotency-Key; "
       "a known external_ref returns its ticket with 200)", body=schemas.TicketCreate, response=schemas.TicketOut,
       status=201, errors=(400, 401, 403, 413, 422, 429), mapped=True)
async def create_ticket(call: Call) -> web.Response:
    body: schemas.TicketCreate = call.body
    c = body.customer
    return await execute(call, lambda idem: ApiCreateTicket(
        system=call.principal.name, description=body.description, external_ref=body.external_ref,
        customer_id=c.id, customer_phone=c.phone, customer_key=c.external_key, customer_name=c.name,
        store=body.store, asset=body.asset, priority=body.priority, impact=body.impact, category=body.category,
        idempotency=idem))


@route("GET", "/tickets/{number}", scope="tickets:read", summary="Read a ticket", response=schemas.TicketOut,
       errors=(401, 403, 404, 429))
async def read_ticket(call: Call) -> web.Response:
    number = call.request.match_info["number"].strip().upper()
    async with call.runtime.uow() as uow:
        ticket = await uow.get_ticket(number)
        refs = await uow.hub().external_refs(number) if ticket is not None else {}
        attached = await hub_routes.attachments_of(uow, number) if ticket is not None else []
    if ticket is None:
        raise ProblemError(404, "not_found", f"ticket {number} not found")
    return json_response({**ticket_json(ticket, refs), "attachments": attached})


def _cursor(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(base64.urlsafe_b64decode(text.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ProblemError(400, "bad_query", "cursor is not one this API gave",
                           errors=[{"field": "cursor", "message": "invalid"}]) from None


def _limit(text: str | None, default: int = 50, top: int = 200) -> int:
    try:
        value = int(text) if text else default
    except ValueError:
        value = 0
    if not 1 <= value <= top:
        raise ProblemError(400, "bad_query", f"limit must be 1–{top}",
                           errors=[{"field": "limit", "message": f"1–{top}"}])
    return value


@route("GET", "/tickets", scope="tickets:read", summary="List tickets, newest first, with filters and a cursor",
       response=schemas.TicketPage, errors=(400, 401, 403, 429), query=(
           Query("status", "Comma-separated states, e.g. pending_dispatch,dispatched"),
           Query("store", "Store code"), Query("customer", "Customer (person) id"),
           Query("updated_since", "ISO 8601 with offset", {"type": "string", "format": "date-time"}),
           Query("limit", "1–200, default 50", {"type": "integer", "minimum": 1, "maximum": 200}),
           Query("cursor", "next_cursor of the previous page")))
async def list_tickets(call: Call) -> web.Response:
    q = call.request.query
    statuses = [s.strip() for s in q.get("status", "").split(",") if s.strip()]
    known = {s.value for s in TicketStatus}
    if unknown := [s for s in statuses if s not in known]:
        raise ProblemError(400, "bad_query", f"unknown status: {', '.join(unknown)}",
                           errors=[{"field": "status", "message": f"one of {', '.join(sorted(known))}"}])
    since = None
    if q.get("updated_since"):
        try:
            since = datetime.fromisoformat(q["updated_since"])
        except ValueError:
            since = None
        if since is None or since.tzinfo is None:
            raise ProblemError(400, "bad_query", "updated_since must be ISO 8601 with an offset",
                               errors=[{"field": "updated_since", "message": "e.g. 2026-12-06T08:00:00+08:00"}])
    limit = _limit(q.get("limit"))
    async with call.runtime.uow() as uow:
        hub = uow.hub()
        tickets = await hub.ticket_page(before_id=_cursor(q.get("cursor")), limit=limit + 1, statuses=statuses,
                                        store_id=q.get("store") or None, customer_id=q.get("customer") or None,
                                        updated_since=since)
        page = tickets[:limit]
        refs = await hub.external_refs_of([t.number for t in page])
    more = len(tickets) > limit and page[-1].id is not None
    cursor = base64.urlsafe_b64encode(str(page[-1].id).encode()).decode().rstrip("=") if more else None
    return json_response({"items": [ticket_json(t, refs.get(t.number, {})) for t in page], "next_cursor": cursor})


@route("POST", "/tickets/{number}/transitions", scope="tickets:write",
       summary="Move a ticket by a workflow step name; resolve/close only with the customer's signature "
               "(409 otherwise, audited, supervisors told)", body=schemas.TransitionRequest,
       response=schemas.TicketOut, errors=(401, 403, 404, 409, 422, 429))
async def transition(call: Call) -> web.Response:
    body: schemas.TransitionRequest = call.body
    number = call.request.match_info["number"].strip().upper()
    # A status name of the client's own (its field mapping's `states`): the step that leads there.
    mapping = await _state(call.request).mapping(call.principal.name)
    state = mapping.state_of(body.name) if mapping is not None else None
    return await execute(call, lambda idem: ApiTransition(call.principal.name, number, body.name, body.reason,
                                                          idempotency=idem, state=state))


@route("POST", "/tickets/{number}/comments", scope="tickets:write", summary="Add a comment (audited; the "
       "assignee is told)", body=schemas.CommentRequest, response=schemas.CommentOut, status=201,
       errors=(401, 403, 404, 422, 429))
async def comment(call: Call) -> web.Response:
    body: schemas.CommentRequest = call.body
    number = call.request.match_info["number"].strip().upper()
    return await execute(call, lambda idem: ApiComment(call.principal.name, number, body.text, idempotency=idem))


# --- master data: PUT by natural key (upsert), GET one, GET a page in key order ---
def _phone(text: str, field_name: str) -> str:
    phone = normalise_phone(text)
    if phone is None:
        raise ProblemError(422, "validation", f"not a phone number: {text}",
                           errors=[{"field": field_name, "message": "not a phone number"}])
    return phone


def _key(kind: str, text: str) -> str:
    value = text.strip()
    if not value or len(value) > 64:
        raise ProblemError(404, "not_found", f"no {kind} key given")
    return value


def customer_record(key: str, body: schemas.CustomerIn) -> CustomerRecord:
    return CustomerRecord(id=key, name=body.name, phones=tuple(_phone(p, f"phones.{i}")
                                                               for i, p in enumerate(body.phones)),
                          addresses=tuple(Address(a.label, a.text, a.lat, a.lng) for a in body.addresses),
                          company=body.company, service_level=body.service_level, store_code=body.store)


def customer_json(r: CustomerRecord) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "phones": list(r.phones), "addresses": [a.to_dict() for a in r.addresses],
            "company": r.company, "service_level": r.service_level, "store": r.store_code,
            "forgotten_at": r.forgotten_at.isoformat() if r.forgotten_at else None}


def asset_record(key: str, body: schemas.AssetIn) -> AssetRecord:
    def checked(field_name: str, make: Callable[[], str | None]) -> str | None:
        try:
            value = make()
        except ValueError as error:
            raise ProblemError(422, "validation", f"{field_name}: {error}",
                               errors=[{"field": field_name, "message": str(error)}]) from None
        return value

    plate = checked("plate", lambda: None if not body.plate else normalise_plate(body.plate) or _bad("车牌格式不对"))
    return AssetRecord(id=key, sn=checked("sn", lambda: normalise_sn(body.sn) if body.sn else None),
                       vin=checked("vin", lambda: normalise_vin(body.vin) if body.vin else None), plate=plate,
                       brand=body.brand, model=body.model, store_code=body.store, customer_id=body.customer_id,
                       installed_on=body.installed_on, purchased_on=body.purchased_on,
                       warranty_end=body.warranty_end, params=dict(body.params),
                       display_id=body.sn or body.vin or body.plate or key)


def _bad(message: str) -> str:
    raise ValueError(message)


def asset_json(r: AssetRecord) -> dict[str, Any]:
    def iso(d: Any) -> str | None:
        return d.isoformat() if d else None

    return {"id": r.id, "sn": r.sn, "vin": r.vin, "plate": r.plate, "brand": r.brand, "model": r.model,
            "store": r.store_code, "customer_id": r.customer_id, "installed_on": iso(r.installed_on),
            "purchased_on": iso(r.purchased_on), "warranty_end": iso(r.warranty_end), "params": dict(r.params)}


def contract_json(r: ContractRecord) -> dict[str, Any]:
    return {"number": r.number, "customer_id": r.customer_id, "asset_ids": list(r.asset_ids), "level": r.level,
            "valid_from": r.valid_from.isoformat(), "valid_to": r.valid_to.isoformat()}


def store_json(r: StoreRecord) -> dict[str, Any]:
    return {"code": r.code, "name": r.name, "address": r.address, "lat": r.lat, "lng": r.lng,
            "opening_hours": r.opening_hours, "phone": r.phone, "active": r.active}


@dataclass(frozen=True, slots=True)
class Kind:
    """One master-data resource: how to build its record, upsert it, read it back, show it."""

    name: str
    body: type[BaseModel]
    build: Callable[[str, Any], Any]
    upsert: Callable[[Any, Any, datetime], Awaitable[bool]]
    get: Callable[[Any, Any, str], Awaitable[dict[str, Any] | None]]


async def _get_customer(uow: Any, md: Any, key: str) -> dict[str, Any] | None:
    r = await md.get_customer(key)
    return customer_json(r) if r is not None else None


async def _get_asset(uow: Any, md: Any, key: str) -> dict[str, Any] | None:
    r = await md.get_asset(key)
    return asset_json(r) if r is not None else None


async def _get_contract(uow: Any, md: Any, key: str) -> dict[str, Any] | None:
    r = await md.get_contract(key)
    return contract_json(r) if r is not None else None


async def _get_store(uow: Any, md: Any, key: str) -> dict[str, Any] | None:
    r = await md.get_store(key)
    return store_json(r) if r is not None else None


async def _get_person(uow: Any, md: Any, key: str) -> dict[str, Any] | None:
    found = await uow.hub().person_row(key)
    return found if found is not None and found["role"] != Role.CUSTOMER.value else None


def person_record(key: str, body: schemas.PersonIn) -> PersonRecord:
    return PersonRecord(id=key, name=body.name, role=Role(body.role),
                        phone=_phone(body.phone, "phone") if body.phone else None, store_code=body.store,
                        team_code=body.team, supervisor_id=body.supervisor_id, title=body.title, active=body.active)


def contract_record(key: str, body: schemas.ContractIn) -> ContractRecord:
    if body.valid_to < body.valid_from:
        raise ProblemError(422, "validation", "valid_to is before valid_from",
                           errors=[{"field": "valid_to", "message": "before valid_from"}])
    return ContractRecord(number=key, customer_id=body.customer_id, asset_ids=tuple(body.asset_ids),
                          level=body.level, valid_from=body.valid_from, valid_to=body.valid_to)


def store_record(key: str, body: schemas.StoreIn) -> StoreRecord:
    return StoreRecord(code=key, name=body.name, address=body.address, lat=body.lat, lng=body.lng,
                       opening_hours=body.opening_hours, phone=body.phone, active=body.active)


KINDS = {
    "customers": Kind("customers", schemas.CustomerIn, customer_record,
                      lambda md, rec, at: md.upsert_customer(rec, at=at), _get_customer),
    "assets": Kind("assets", schemas.AssetIn, asset_record, lambda md, rec, at: md.upsert_asset(rec), _get_asset),
    "contracts": Kind("contracts", schemas.ContractIn, contract_record,
                      lambda md, rec, at: md.upsert_contract(rec), _get_contract),
    "stores": Kind("stores", schemas.StoreIn, store_record, lambda md, rec, at: md.upsert_store(rec), _get_store),
    "people": Kind("people", schemas.PersonIn, person_record,
                   lambda md, rec, at: md.upsert_person(rec, at=at), _get_person),
}


def _masterdata_routes() -> None:
    for kind in KINDS.values():
        _register_kind(kind)


def _register_kind(kind: Kind) -> None:
    singular = kind.name.rstrip("s") if kind.name != "people" else "person"

    async def put(call: Call) -> web.Response:
        key = _key(singular, call.request.match_info["key"])
        record = kind.build(key, call.body)
        runtime = call.runtime
        async with runtime.uow() as uow:
            try:
                created = await kind.upsert(uow.masterdata(), record, runtime.clock.now())
            except InvalidInput as error:
                field_name = str(error.data.get("field") or "(body)")
                raise ProblemError(422, "validation", error.user_message,
                                   errors=[{"field": field_name, "message": error.user_message}]) from None
            await uow.append_audit(kind="masterdata_upserted", actor_id=call.actor.id, at=runtime.clock.now(),
                                   payload={"kind": kind.name, "key": key, "created": created,
                                            "system": call.principal.name}, ticket_number=None)
            shown = await kind.get(uow, uow.masterdata(), key)
            await uow.commit()
        return json_response({"created": created, "record": shown}, 201 if created else 200)

    async def get(call: Call) -> web.Response:
        key = _key(singular, call.request.match_info["key"])
        async with call.runtime.uow() as uow:
            shown = await kind.get(uow, uow.masterdata(), key)
        if shown is None:
            raise ProblemError(404, "not_found", f"{singular} {key} not found")
        return json_response(shown)

    async def listing(call: Call) -> web.Response:
        q = call.request.query
        limit = _limit(q.get("limit"), 100, 500)
        after = q.get("cursor") or None
        async with call.runtime.uow() as uow:
            md = uow.masterdata()
            if kind.name == "stores":
                keys = [s.code for s in await md.list_stores() if after is None or s.code > after][:limit + 1]
            else:
                keys = await uow.hub().keys_after(kind.name, after, limit + 1)
            items = [item for k in keys[:limit] if (item := await kind.get(uow, md, k)) is not None]
        more = len(keys) > limit
        return json_response({"items": items, "next_cursor": keys[limit - 1] if more else None})

    route("PUT", f"/{kind.name}/{{key}}", scope="masterdata:write", summary=f"Create or update a {singular} "
          "by its key", body=kind.body, response=schemas.UpsertResult, errors=(400, 401, 403, 413, 422, 429))(put)
    route("GET", f"/{kind.name}/{{key}}", scope="masterdata:read", summary=f"Read a {singular}",
          errors=(401, 403, 404, 429))(get)
    route("GET", f"/{kind.name}", scope="masterdata:read", summary=f"List {kind.name} in key order",
          response=schemas.RecordPage, errors=(400, 401, 403, 429),
          query=(Query("limit", "1–500, default 100", {"type": "integer", "minimum": 1, "maximum": 500}),
                 Query("cursor", "next_cursor of the previous page")))(listing)


_masterdata_routes()
# The hub's own routes (field mappings, the dashboard, reconcile, attachments) register into ROUTES too.
from bot.api_v1 import hub_routes  # noqa: E402


# --- core errors → problems ---
def core_problem(error: TicketbotError) -> ProblemError:
    field_name = error.data.get("field")
    errors = [{"field": field_name, "message": error.user_message}] if field_name else None
    if isinstance(error, NotFound):
        return ProblemError(404, "not_found", error.user_message)
    if isinstance(error, InvalidInput):
        return ProblemError(422, "validation", error.user_message, errors=errors or [
            {"field": "(body)", "message": error.user_message}])
    if isinstance(error, (IllegalTransition, NotAllowed)) and "allowed" in error.data:
        return ProblemError(409, "illegal_transition", error.user_message, allowed=error.data["allowed"],
                            current_status=error.data.get("status"))
    if isinstance(error, NotAllowed):
        return ProblemError(403, "not_allowed", error.user_message)
    if isinstance(error, Conflict):
        return ProblemError(409, "conflict", error.user_message, errors=errors)
    return ProblemError(422, "refused", error.user_message)


@web.middleware
async def v1_middleware(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    started = time.perf_counter()
    if not request.path.startswith(PREFIX + "/"):
        # Every other path is timed too (platform callbacks, the playground, /api/): one observation.
        plain = await handler(request)
        if request.path != "/metrics":
            metrics.observe_http(request, plain.status, time.perf_counter() - started)
        return plain
    try:
        response = await handler(request)
    except ProblemError as problem:
        response = problem_response(problem.status, problem.slug, problem.detail, instance=request.path,
                                    headers=problem.headers, **problem.extra)
    except TicketbotError as error:
        refused = core_problem(error)
        response = problem_response(refused.status, refused.slug, refused.detail, instance=request.path,
                                    **refused.extra)
    except web.HTTPException as http:
        if http.status < 400:
            raise
        response = problem_response(http.status, "http", http.reason or "error", instance=request.path)
    except Exception:  # a bug or a database failure: logged, answered as a problem, never a stack trace
        log.exception("%s %s failed", request.method, request.path)
        response = problem_response(500, "internal", "internal error (logged)", instance=request.path)
    metrics.observe_http(request, response.status, time.perf_counter() - started)
    return response


def add_routes(app: web.Application, runtime: Runtime) -> None:
    from bot.api_v1 import openapi

    state = ApiV1(runtime)
    app[API_V1] = state
    for spec in ROUTES:
        app.router.add_route(spec.method, spec.path, state.wrap(spec))
    app.router.add_get(PREFIX + "/openapi.json", openapi.document_handler)
    app.router.add_get(PREFIX + "/docs", openapi.docs_handler)
