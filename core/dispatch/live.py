"""The per-process CandidateIndex of one service, kept in step with the database.

Why this shape. Ranking must see what the database says now, whichever process changed it, yet
reloading every technician per decision costs a full read of the directory. So each process keeps
one CandidateIndex and, inside the deciding transaction, brings it up to date from the audit chain:

  * the chain head (seq, hash) is the cheap version counter. Reading it takes the same row lock an
    audit append takes, so no other transaction can commit events while we decide; events commit in
    seq order (appends serialise on that lock), so "everything after the seq we applied" is exact;
  * events after our mark name what changed: a ticket's event may move its load to or from a
    technician (re-read its assignee and status; the previous holder is remembered here), and a
    sign-off (`signed_off`, written with the rating) changes its assignee's rating; `technician_*`
    events name directory changes; `offer_accepted` counts towards the jobs accepted in the last
    3 days (their expiry is scheduled, so the count decays);
  * positions change without an event (the location handler writes them directly), so they are
    polled with a watermark on `last_position_at`, looking POSITION_COMMIT_LAG behind it (a position
    is stamped when its command began, and may commit after a later-stamped one was polled);
  * the mark stores the hash too: if the transaction we caught up in rolled back, the event at our
    mark is gone or different next time, and we rebuild (as we do when far behind, and once an hour
    as a safety net for edits made outside the service, e.g. a store's coordinates);
  * the dispatch policy is cached the same way: a `config_changed` event of kind "dispatch" drops it.

Everything the index holds is therefore the committed state plus the deciding transaction's own
changes, and a rebuild from scratch gives the same profiles (tests compare the two).
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from core.dispatch.engine import (
    CandidateIndex,
    DispatchPolicy,
    DispatchRequest,
    Exclusion,
    RankedCandidate,
    TechnicianProfile,
    explain_exclusions,
    rank_candidates,
)
from core.dispatch.store import ChainMark, DispatchStore, TechnicianEntry
from core.model import AuditEvent, TicketStatus

S = TicketStatus
# Tickets that count towards a technician's open load: offered, accepted and being worked on.
# 待客户签字 is not: the technician's part is done.
LOAD_STATES = frozenset({S.DISPATCHED, S.ACCEPTED, S.CHECKED_IN, S.IN_PROGRESS, S.WAITING_PARTS,
                         S.WAITING_CUSTOMER_PLAN, S.PENDING_QC, S.REOPENED})
ACCEPTED_WINDOW = timedelta(days=3)
ACCEPTED_KIND = "offer_accepted"
DIRECTORY_KIND_PREFIX = "technician"  # technician_added, technician_updated, technicians_imported ...
DIRECTORY_KINDS = frozenset({"people_imported"})  # master data (core/masterdata/imports.py) names person_ids too
CONFIG_KIND, POLICY_KIND = "config_changed", "dispatch"  # a new dispatch policy version
RATING_KINDS = frozenset({"signed_off"})  # core.lifecycle.signoff records the customer's rating with this event
MAX_CATCH_UP_EVENTS = 5000  # further behind than this: a rebuild is cheaper
POSITION_COMMIT_LAG = timedelta(seconds=10)  # a position's command commits within this (SQLite waits 5 s at most)
FULL_REFRESH_AFTER = timedelta(hours=1)

PolicySource = Callable[[], Awaitable[tuple[int, DispatchPolicy]]]  # (version, policy) from the database
_LIVE: weakref.WeakKeyDictionary[object, LiveIndex] = weakref.WeakKeyDictionary()


def live_index(owner: object) -> LiveIndex:
    """The LiveIndex of a service (one per service object, i.e. per process and database)."""
    found = _LIVE.get(owner)
    if found is None:
        found = _LIVE[owner] = LiveIndex()
    return found


class LiveIndex:
    def __init__(self) -> None:
        self.index = CandidateIndex()
        self.entries: dict[str, TechnicianEntry] = {}
        self.holders: dict[str, str] = {}  # ticket number -> technician whose load counts it
        self.load: Counter[str] = Counter()
        self.accepted: dict[str, list[datetime]] = {}  # sorted acceptance times inside the window
        self._expiries: list[tuple[datetime, str]] = []  # (time an acceptance leaves the window, person)
        self.mark: ChainMark | None = None
        self.position_mark: datetime | None = None
        self.built_at: datetime | None = None
        self.rebuilds = 0
        self.full_refresh_after = FULL_REFRESH_AFTER
        self._policy: tuple[int, DispatchPolicy] | None = None
        self._lock = asyncio.Lock()

    # --- what dispatch calls (inside its transaction) ---

    async def prepare(self, directory: DispatchStore, now: datetime) -> None:
        """Bring the index up to date now. The service calls this at start-up, before it is ready: the
        first build (every technician, the open load, the acceptances of 3 days; and the first use of
        its statements) otherwise ran inside the first fault report after a start, on the event loop
        (57–170 ms at 100 k tickets, issue 24). Later decisions catch up from its mark by events."""
        head = await directory.chain_head()
        async with self._lock:
            await self._sync(directory, head, now)

    async def rank(self, directory: DispatchStore, request: DispatchRequest, policy: PolicySource,
                   now: datetime, *, limit: int | None) -> tuple[int, DispatchPolicy, list[RankedCandidate]]:
        """(policy version, policy, the best `limit` candidates) as of now, the index brought up to date."""
        head = await directory.chain_head()  # the DB lock first, then ours: no lock-order inversion
        async with self._lock:
            await self._sync(directory, head, now)
            version, current = await self._current_policy(policy)
            return version, current, rank_candidates(request, self.index, current, now, limit=limit)

    async def explain(self, directory: DispatchStore, request: DispatchRequest, policy: PolicySource,
                      now: datetime, *, limit: int | None
                      ) -> tuple[int, DispatchPolicy, list[RankedCandidate], list[Exclusion]]:
        head = await directory.chain_head()
        async with self._lock:
            await self._sync(directory, head, now)
            version, current = await self._current_policy(policy)
            return (version, current, rank_candidates(request, self.index, current, now, limit=limit),
                    explain_exclusions(request, self.index, current, now))

    async def _current_policy(self, source: PolicySource) -> tuple[int, DispatchPolicy]:
        # Cached until the feed shows a dispatch config change (or a rebuild): one query less per decision.
        if self._policy is None:
            self._policy = await source()
        return self._policy

    async def profile(self, directory: DispatchStore, person_id: str, now: datetime) -> TechnicianProfile | None:
        """The current profile of one technician (active or not); None when unknown."""
        head = await directory.chain_head()
        async with self._lock:
            await self._sync(directory, head, now)
            entry = self.entries.get(person_id)
            return self._profile(entry, now) if entry is not None else None

    async def everyone(self, directory: DispatchStore, now: datetime) -> dict[str, TechnicianProfile]:
        """Every known technician's current profile (active or not), by person id."""
        head = await directory.chain_head()
        async with self._lock:
            await self._sync(directory, head, now)
            return {p.person_id: p for p in self.profiles(now)}

    def profiles(self, now: datetime) -> list[TechnicianProfile]:
        """Every known technician's profile as of the last sync: what the index holds for the active ones
        (tests compare these with a rebuild), computed for the others."""
        out = []
        for entry in sorted(self.entries.values(), key=lambda e: e.person_id):
            held = self.index.get(entry.person_id) if entry.active else None
            out.append(held if held is not None else self._profile(entry, now))
        return out

    # --- keeping up ---

    async def _sync(self, directory: DispatchStore, head: ChainMark, now: datetime) -> None:
        if self._stale(head, now):
            await self._rebuild(directory, head, now)
        elif self.mark is not None and head.seq > self.mark.seq:
            # From our mark on (inclusive): the event at the mark must still be the one we applied, or the
            # transaction we caught up in rolled back and its seq numbers were reused.
            events = await directory.events_after(self.mark.seq - 1, MAX_CATCH_UP_EVENTS + 2)
            if self.mark.seq > 0:
                if not events or events[0].id != self.mark.seq or events[0].hash != self.mark.hash:
                    events = []
                else:
                    events = events[1:]
            if not events or len(events) > MAX_CATCH_UP_EVENTS:
                await self._rebuild(directory, head, now)
            else:
                await self._apply(directory, events, now)
                self.mark = head
        await self._poll_positions(directory, now)
        self._expire_acceptances(now)

    def _stale(self, head: ChainMark, now: datetime) -> bool:
        if self.mark is None or self.built_at is None:
            return True
        if now - self.built_at >= self.full_refresh_after or now < self.built_at - self.full_refresh_after:
            return True
        if head.seq < self.mark.seq:
            return True  # what we applied was rolled back
        return head.seq == self.mark.seq and head.hash != self.mark.hash  # ... and as many events appended

    async def _rebuild(self, directory: DispatchStore, head: ChainMark, now: datetime) -> None:
        entries = await directory.entries()
        assignments = await directory.assignments(LOAD_STATES)
        acceptances = await directory.acceptances_since(now - ACCEPTED_WINDOW)
        self.entries = {e.person_id: e for e in entries}
        self.holders = {n: a for n, (a, counted) in assignments.items() if a is not None and counted}
        self.load = Counter(self.holders.values())
        self.accepted, self._expiries = {}, []
        for person_id, at in sorted(acceptances, key=lambda item: item[1]):
            self._add_acceptance(person_id, at)
        self.position_mark = max((e.last_position_at for e in entries if e.last_position_at is not None),
                                 default=None)
        self.index = CandidateIndex(self._profile(e, now) for e in entries if e.active)
        self.mark, self.built_at = head, now
        self._policy = None
        self.rebuilds += 1

    async def _apply(self, directory: DispatchStore, events: Iterable[AuditEvent], now: datetime) -> None:
        tickets: set[str] = set()
        rated: set[str] = set()  # tickets whose assignee got a rating
        reload: set[str] = set()  # directory rows to read again
        touched: set[str] = set()  # profiles to recompute from what we hold (load, acceptances)
        for event in events:
            if event.ticket_number:
                tickets.add(event.ticket_number)
                if event.kind in RATING_KINDS:
                    rated.add(event.ticket_number)
            if event.kind == ACCEPTED_KIND:
                self._add_acceptance(event.actor_id, event.at)
                touched.add(event.actor_id)
            elif event.kind.startswith(DIRECTORY_KIND_PREFIX) or event.kind in DIRECTORY_KINDS:
                reload.update(_people_named(event.payload))
            elif event.kind == CONFIG_KIND and event.payload.get("kind") == POLICY_KIND:
                self._policy = None
        if tickets:
            for number, (assignee, counted) in (await directory.assignments(LOAD_STATES, tickets)).items():
                if assignee is not None and number in rated:
                    reload.add(assignee)
                holder = assignee if counted else None
                previous = self.holders.get(number)
                if previous == holder:
                    continue
                if previous is not None:
                    self.load[previous] -= 1
                    touched.add(previous)
                if holder is None:
                    self.holders.pop(number, None)
                else:
                    self.holders[number] = holder
                    self.load[holder] += 1
                    touched.add(holder)
        found = {e.person_id: e for e in await directory.entries(reload)} if reload else {}
        for person_id in reload:
            self._put(found.get(person_id), person_id, now)
        for person_id in touched - reload:
            if person_id in self.entries:
                self._put(self.entries[person_id], person_id, now)

    async def _poll_positions(self, directory: DispatchStore, now: datetime) -> None:
        # A little behind the mark: a position is stamped when its command began and may commit after a
        # later-stamped one was polled. What is read again unchanged is skipped below.
        since = self.position_mark - POSITION_COMMIT_LAG if self.position_mark is not None else None
        reports = await directory.positions_since(since)
        for report in reports:
            entry = self.entries.get(report.person_id)
            if entry is not None and (entry.last_position, entry.last_position_at) != (report.position, report.at):
                self._put(replace(entry, last_position=report.position, last_position_at=report.at),
                          entry.person_id, now)
            if self.position_mark is None or report.at > self.position_mark:
                self.position_mark = report.at

    def _add_acceptance(self, person_id: str, at: datetime) -> None:
        bisect.insort(self.accepted.setdefault(person_id, []), at)
        heapq.heappush(self._expiries, (at + ACCEPTED_WINDOW, person_id))

    def _expire_acceptances(self, now: datetime) -> None:
        changed: set[str] = set()
        while self._expiries and self._expiries[0][0] <= now:
            _, person_id = heapq.heappop(self._expiries)
            changed.add(person_id)
        for person_id in changed:
            times = self.accepted.get(person_id, [])
            del times[:bisect.bisect_right(times, now - ACCEPTED_WINDOW)]
            self._put(self.entries.get(person_id), person_id, now)

    def _put(self, entry: TechnicianEntry | None, person_id: str, now: datetime) -> None:
        if entry is None:
            self.entries.pop(person_id, None)
            self.index.remove(person_id)
            return
        self.entries[person_id] = entry
        if entry.active:
            self.index.upsert(self._profile(entry, now))
        else:
            self.index.remove(person_id)

    def _profile(self, entry: TechnicianEntry, now: datetime) -> TechnicianProfile:
        since = now - ACCEPTED_WINDOW
        times = self.accepted.get(entry.person_id, ())
        recent = len(times) - bisect.bisect_right(times, since) if times else 0
        return TechnicianProfile(
            person_id=entry.person_id,
            name=entry.name,
            certifications=entry.certifications,
            skills=entry.skills,
            home_store=entry.store_id,
            home_position=entry.store_position,
            last_position=entry.last_position,
            last_position_at=entry.last_position_at,
            on_duty=entry.on_duty,
            open_load=max(0, self.load.get(entry.person_id, 0)),
            accepted_last_3_days=recent,
            rating=entry.rating,
            max_load=entry.max_load,
            excluded_categories=entry.excluded_categories,
        )


def _people_named(payload: dict[str, object]) -> Collection[str]:
    ids: list[str] = []
    one = payload.get("person_id")
    if isinstance(one, str):
        ids.append(one)
    many = payload.get("person_ids")
    if isinstance(many, list):
        ids += [p for p in many if isinstance(p, str)]
    return ids
