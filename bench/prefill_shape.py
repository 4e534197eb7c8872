"""The realistic mix for bench/prefill_db.py (`--full-trail`, `--open-share`): what queues, ticket
files and dashboards need to show something at a million tickets.

Differences from the plain prefill (every ticket closed, 13 events):
  * tickets run up to `end` (not 3 days before it): the newest are open at whatever step their life has
    reached, and a share (`open_share`) of the last 30 days' tickets got stuck in a state (待派单, 已接单,
    等待备件, 待签字 …) — a backlog with an age, SLA deadlines past (breached, with the `sla_breached`
    event the escalation writes) or close (at risk), pending SLA timers;
  * priorities with their own deadlines (紧急 1 h/8 h, 常规 4 h/48 h, 咨询 8 h/72 h); some tickets answered
    or finished late (tracks breached), the others met;
  * the trail as the service writes it: check-in (location + check-in photo, 93 %), 0–5 work photos (most
    3), the signature (`signed_off`, both confirmations, a 1–5 rating that grows with the photos: seed 1's
    correlation), 4 % reopened after closing (`rework.count`) and finished again; photo rows too;
  * stores (50, in eight cities, some busier than others) on the ticket's `store_id` column, technicians
    working mostly for one store, people rows (technicians, customers, a supervisor per store).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from storage.database import compact_json

if TYPE_CHECKING:
    from bench.prefill_db import Chain, Rows, Shape

PRIORITY_MIX = ("常规",) * 6 + ("紧急",) * 3 + ("咨询",)
DEADLINES = {"紧急": (60, 480), "常规": (240, 2880), "咨询": (480, 4320)}  # response, resolution (minutes)
CITIES = (("上海", 31.23, 121.47), ("杭州", 30.27, 120.15), ("南京", 32.06, 118.79), ("苏州", 31.30, 120.58),
          ("合肥", 31.82, 117.23), ("宁波", 29.87, 121.55), ("无锡", 31.49, 120.31), ("常州", 31.81, 119.97))
STUCK_STATES = ("pending_dispatch", "dispatched", "accepted", "checked_in", "in_progress", "waiting_parts",
                "pending_signoff")
RECENT = timedelta(days=30)
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"


def store_positions(stores: int) -> list[tuple[str, str, float, float]]:
    """(id, name, lat, lng) of the stores, spread over the cities (deterministic)."""
    rng = random.Random(7)
    out = []
    for n in range(stores):
        city, lat, lng = CITIES[n % len(CITIES)]
        out.append((f"store-{n:03d}", f"{city}{n // len(CITIES) + 1}号店", round(lat + rng.uniform(-0.12, 0.12), 5),
                    round(lng + rng.uniform(-0.12, 0.12), 5)))
    return out


def person_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")


def masterdata(stores: int, technicians: int, customers: int, sqlite_times: bool, now: datetime
               ) -> dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """Rows of stores, people (technicians, customers, a supervisor per store and one at headquarters, an
    admin) and technicians."""
    rng = random.Random(11)
    at: Any = now.isoformat(" ", "microseconds")[:26] if sqlite_times else now
    store_rows = [(sid, name, lat, lng, f"{name}地址", "08:00-22:00", "", True)
                  for sid, name, lat, lng in store_positions(stores)]
    people: list[tuple[Any, ...]] = []
    techs: list[tuple[Any, ...]] = []
    for n in range(technicians):
        pid = f"tech-{n:04d}"
        people.append((pid, person_name(rng), "technician", f"139{n:08d}", f"store-{n % stores:03d}", None,
                       "local", True, at))
        techs.append((pid, "[]", '["电气","空调","给排水"]', "[]", True, 5, 0.0, 0))
    for n in range(customers):
        people.append((f"cust-{n:05d}", person_name(rng), "customer", f"138{n:08d}", f"store-{n % stores:03d}", None,
                       "local", True, at))
    people.append(("cust-heavy", "大客户", "customer", "13700000000", "store-000", None, "local", True, at))
    for n in range(stores):
        people.append((f"sup-{n:03d}", f"店长{n:03d}", "supervisor", f"137{n:08d}", f"store-{n:03d}", None,
                       "local", True, at))
    # Headquarters' dispatch desk (no store): a store-less ticket nobody can take goes there, not to the
    # 50 store managers (core/masterdata/org.py), as in a real chain.
    people.append(("sup-hq", "总部调度", "supervisor", "13600000000", None, None, "local", True, at))
    people.append(("admin-0", "管理员", "admin", None, None, None, "local", True, at))
    # Staff reachable in the playground (platform "local", their id): 报表, 后台 and the benches use them.
    identities = [("local", row[0], row[0]) for row in people if row[2] != "customer"]
    return {
        "stores": (("id", "name", "lat", "lng", "address", "opening_hours", "phone", "active"), store_rows),
        "identities": (("platform", "external_id", "person_id"), identities),
        "people": (("id", "name", "role", "phone", "store_id", "supervisor_id", "preferred_channel", "active",
                    "created_at"), people),
        "technicians": (("person_id", "certifications", "skills", "excluded_categories", "on_duty", "max_load",
                         "rating_sum", "rating_count"), techs),
    }


def _iso(value: datetime) -> str:
    return value.isoformat()


def _track(due: datetime, met_at: datetime | None, now: datetime, stopped: datetime | None
           ) -> tuple[dict[str, Any], datetime | None]:
    """The SLA track as the service keeps it at `now`, and when a breach fired (None: no breach)."""
    limit = min(now, stopped) if stopped else now
    breached = due if (met_at is None or met_at > due) and due < limit else None
    met: bool | None = None if met_at is None else (met_at <= due and breached is None)
    state = {"due": _iso(due), "met_at": _iso(met_at) if met_at else None, "met": met,
             "breached_at": _iso(breached) if breached else None, "escalation_cards": [], "escalated_to": [],
             "ack_by": None, "ack_at": None, "level2_at": None, "root_cause": None}
    return state, breached


Event = tuple[str, str, datetime, dict[str, Any]]


def _moves(tech: str, customer: str, t: dict[str, datetime], parts: bool, rng: random.Random, number: str,
           ticket_id: int, photos: int, checkin: bool, signed: bool, rating: int, reopen: datetime | None
           ) -> list[tuple[Event, str | None]]:
    """The ticket's whole life as (event, state entered or None), in time order (times may pass `end`)."""
    def move(actor: str, at: datetime, transition: str, frm: str, to: str) -> tuple[Event, str]:
        return ("status_changed", actor, at, {"transition": transition, "from": frm, "to": to}), to

    def work(round_: int, start: dict[str, datetime]) -> list[tuple[Event, str | None]]:
        out: list[tuple[Event, str | None]] = []
        if checkin:
            out.append((("location_shared", tech, start["checked_in"] - timedelta(seconds=30),
                         {"lat": 31.2, "lng": 121.4, "purpose": "checkin"}), None))
            out.append((("photo_added", tech, start["checked_in"] - timedelta(seconds=10),
                         {"sha256": f"{ticket_id:056x}c{round_:07x}", "size": 110_000, "purpose": "checkin",
                          "path": f"photos/{number}/checkin-{round_}.jpg"}), None))
        out.append(move(tech, start["checked_in"], "check_in", "accepted", "checked_in"))
        out.append(move(tech, start["started"], "start", "checked_in", "in_progress"))
        if parts and round_ == 0:
            out.append(move(tech, start["started"] + timedelta(minutes=5), "wait_parts", "in_progress",
                            "waiting_parts"))
            out.append(move("system", start["parts_back"], "parts_ready", "waiting_parts", "in_progress"))
        span = (start["done"] - start["parts_back"]) / (photos + 1)
        for n in range(photos):
            out.append((("photo_added", tech, start["parts_back"] + span * (n + 1),
                         {"sha256": f"{ticket_id:056x}{round_:01x}{n:07x}", "size": 120_000 + n, "purpose": "work",
                          "path": f"photos/{number}/{round_}-{n + 1}.jpg"}), None))
        out.append(move(tech, start["done"], "complete", "in_progress", "pending_signoff"))
        if signed:
            out.append((("signed_off", customer, start["closed"],
                         {"round": round_ + 1, "by": customer, "at": _iso(start["closed"]), "rating": rating,
                          "confirmations": {"cause_told": True, "parts_confirmed": True}, "card_id": ticket_id,
                          "seconds_to_sign": round((start["closed"] - start["done"]).total_seconds(), 1)}), None))
        out.append(move(customer if signed else "system", start["closed"], "sign_off", "pending_signoff", "closed"))
        return out

    life: list[tuple[Event, str | None]] = [
        (("ticket_created", customer, t["created"], {"status": "pending_dispatch"}), "pending_dispatch"),
        (("offer_sent", "system", t["offered"], {"technician": tech, "rank": 1}), None),
        move("system", t["offered"], "dispatch", "pending_dispatch", "dispatched"),
        (("offer_accepted", tech, t["accepted"], {"technician": tech}), None),
        move(tech, t["accepted"], "accept", "dispatched", "accepted"),
    ]
    life += work(0, t)
    if reopen is not None:
        again = {"checked_in": reopen + timedelta(hours=rng.uniform(1, 6))}
        again["started"] = again["checked_in"] + timedelta(minutes=rng.uniform(1, 10))
        again["parts_back"] = again["started"]
        again["done"] = again["started"] + timedelta(minutes=rng.uniform(20, 180))
        again["closed"] = again["done"] + timedelta(hours=rng.uniform(0.5, 12))
        life.append(move(customer, reopen, "reopen", "closed", "reopened"))
        life.append(move("system", reopen + timedelta(seconds=5), "dispatch", "reopened", "dispatched"))
        life.append(move(tech, reopen + timedelta(minutes=rng.uniform(2, 30)), "accept", "dispatched", "accepted"))
        life += work(1, again)
        t["closed_final"] = again["closed"]
    else:
        t["closed_final"] = t["closed"]
    return life


def generate_shaped(count: int, days: int, end: datetime, chain: Chain, seed: int, heavy_customer: int,
                    sqlite_times: bool, shape: Shape, counters: dict[str, int]) -> Iterator[Rows]:
    from bench.prefill_db import BATCH, CATEGORIES, CUSTOMERS, LOCAL_OFFSET, STORES, TECHNICIANS, TIMERS, Rows

    rng = random.Random(seed)
    start = end - timedelta(days=days)
    step = (end - start - timedelta(minutes=1)) / max(count, 1)
    stuck_chance = min(1.0, shape.open_share * days / RECENT.days)
    weights = [1 + (n % 7) ** 2 for n in range(STORES)]  # some stores far busier: the heat map's point
    store_cum = []
    total = 0
    for w in weights:
        total += w
        store_cum.append(total)
    positions = store_positions(STORES)
    per_day: dict[str, int] = {}
    t_ = (lambda value: value.isoformat(" ", "microseconds")[:26]) if sqlite_times else (lambda value: value)
    rows = Rows([], [], [], [], [])
    photo_weights = (4, 5, 8, 45, 23, 15)
    for index in range(count):
        created = start + step * index + timedelta(microseconds=rng.randrange(1_000_000))
        day = (created + LOCAL_OFFSET).strftime("%Y%m%d")
        per_day[day] = per_day.get(day, 0) + 1
        number = f"GD-{day}-{per_day[day]:04d}"
        ticket_id = index + 1
        customer = "cust-heavy" if index < heavy_customer else f"cust-{rng.randrange(CUSTOMERS):05d}"
        store_n = rng.choices(range(STORES), cum_weights=store_cum)[0]
        store_id, _, store_lat, store_lng = positions[store_n]
        tech_n = (store_n + STORES * rng.randrange(TECHNICIANS // STORES)) if rng.random() < 0.85 \
            else rng.randrange(TECHNICIANS)
        tech = f"tech-{tech_n % TECHNICIANS:04d}"
        category = rng.choice(CATEGORIES)
        priority = rng.choice(PRIORITY_MIX)
        response_min, resolution_min = DEADLINES[priority]
        subject = f"设备-{rng.randrange(count // 4 + 1):06d}"
        description = f"{subject} {category}故障，请尽快处理"
        late_answer = rng.random() < 0.04
        times: dict[str, datetime] = {"created": created}
        times["offered"] = created + timedelta(seconds=rng.uniform(2, 40) if rng.random() < 0.85
                                               else rng.uniform(40, 600))
        times["accepted"] = times["offered"] + (timedelta(minutes=rng.uniform(response_min, response_min * 2))
                                                if late_answer else timedelta(seconds=rng.uniform(10, 900)))
        times["checked_in"] = times["accepted"] + timedelta(minutes=rng.uniform(10, 120))
        times["started"] = times["checked_in"] + timedelta(minutes=rng.uniform(1, 10))
        parts = rng.random() < 0.1
        times["parts_back"] = times["started"] + timedelta(hours=rng.uniform(2, 48)) if parts else times["started"]
        times["done"] = times["parts_back"] + timedelta(minutes=rng.uniform(20, 240))
        times["closed"] = times["done"] + timedelta(hours=rng.uniform(0.5, 24))
        photos = rng.choices(range(6), weights=photo_weights)[0]
        checkin = rng.random() < 0.93
        signed = rng.random() < 0.97
        rating = max(1, min(5, round(2.4 + 0.45 * photos + rng.gauss(0, 0.8))))
        reopen = times["closed"] + timedelta(days=rng.uniform(0.5, 5)) if rng.random() < 0.04 else None
        life = _moves(tech, customer, times, parts, rng, number, ticket_id, photos, checkin, signed, rating, reopen)
        stuck = rng.choice(STUCK_STATES) if end - created < RECENT and rng.random() < stuck_chance else None
        trail: list[Event] = []
        status = "pending_dispatch"
        entered = created
        for event, state in life:
            if event[2] > end:
                break
            trail.append(event)
            if state is not None:
                status, entered = state, event[2]
                if state == stuck:
                    break
        closed = status == "closed"
        done_at = next((e[2] for e in reversed(trail) if e[0] == "status_changed" and e[3]["to"] == "pending_signoff"),
                       None)
        accepted_at = times["accepted"] if any(e[0] == "offer_accepted" for e in trail) else None
        offered_at = times["offered"] if len(trail) > 1 else None
        response_due = created + timedelta(minutes=response_min)
        resolution_due = created + timedelta(minutes=resolution_min)
        stopped = entered if status in ("waiting_parts", "waiting_customer_plan") else None
        response, response_breach = _track(response_due, accepted_at, end, None)
        resolution, resolution_breach = _track(resolution_due, done_at, end, stopped)
        for track, breach in (("response", response_breach), ("resolution", resolution_breach)):
            if breach is not None:
                trail.append(("sla_breached", "system", breach, {"track": track, "due": _iso(breach),
                                                                 "handler": tech if accepted_at else None}))
        trail.sort(key=lambda e: e[2])
        data: dict[str, Any] = {
            "sla": {"cell": f"{priority}/单用户", "priority": priority, "matrix_version": 1,
                    "response": response, "resolution": resolution,
                    "stopped_since": _iso(stopped) if stopped else None},
            "dispatch": {"offered": [tech]} if offered_at else {},
            "store_id": store_id,
        }
        if accepted_at:
            data["accepted_at"] = _iso(accepted_at)
            data["dispatch"]["accepted"] = {"by": tech, "at": _iso(accepted_at)}
        if checkin and any(e[0] == "location_shared" for e in trail):
            data["checkin"] = {"location": {"lat": store_lat, "lng": store_lng}}
        signature = next((e[3] for e in reversed(trail) if e[0] == "signed_off"), None)
        if signature is not None:
            data["signoff"] = {"round": signature["round"], "signed": signature}
        if any(e[0] == "status_changed" and e[3]["transition"] == "reopen" for e in trail):
            data["rework"] = {"count": 1, "last_at": _iso(reopen) if reopen else None}
        assignee = tech if accepted_at else None
        closed_at = trail[-1][2] if closed else None
        rows.tickets.append((ticket_id, number, customer, subject, description, category, priority, "单用户",
                             status, assignee, False, store_lat + rng.uniform(-0.002, 0.002),
                             store_lng + rng.uniform(-0.002, 0.002), t_(created), t_(trail[-1][2]),
                             t_(offered_at) if offered_at else None, t_(closed_at) if closed_at else None,
                             t_(response_due), t_(resolution_due), len(trail), compact_json(data), store_id))
        for kind, actor, at, payload in trail:
            if kind == "ticket_created":
                payload = {"status": "pending_dispatch", "category": category, "description": description,
                           "keywords": [category], "priority": priority, "impact": "单用户"}
            elif kind == "photo_added":
                rows.photos.append((number, actor, payload["sha256"], payload["path"], payload["size"],
                                    payload["purpose"], t_(at)))
            seq, prev, digest = chain.append(kind, actor, at, number, payload)
            rows.events.append((seq, number, actor, t_(at), kind, compact_json(payload), prev, digest))
        for n, kind in enumerate(TIMERS):
            due = created + timedelta(hours=n + 1)
            if kind == "sla.resolution" and not closed and done_at is None:
                state, due = ("pending", resolution_due) if resolution_due > end else ("fired", resolution_due)
            elif kind == "sla.response" and accepted_at is None:
                state, due = ("pending", response_due) if response_due > end else ("fired", response_due)
            else:
                state = "fired" if n % 3 == 0 and due <= end else "cancelled"
            rows.timers.append((kind, number, t_(due), 1, state, "{}", t_(due) if state == "fired" else None))
        for recipient, what in ((tech, "offer"), (customer, "created"), (customer, "accepted"), (customer, "closed")):
            if what == "closed" and not closed:
                continue
            message = compact_json({"kind": what, "ticket": number, "title": f"工单 {number}"})
            sent = closed_at or created
            rows.outbox.append((recipient, "local", message, "{}", "sent", 1, t_(created), t_(created), t_(sent)))
        if len(rows.tickets) >= BATCH:
            yield rows
            rows = Rows([], [], [], [], [])
    if rows.tickets:
        yield rows
    counters.clear()
    counters.update(per_day)
