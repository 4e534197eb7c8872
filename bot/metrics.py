"""Prometheus metrics (GET /metrics, issue 23). A private registry, so several apps in one process
(tests) share one set of series and nothing else registers into ours.

Cheap on hot paths: a counter increment where something happens (an inbox row accepted, processed
or failed, an outbox delivery's outcome, an HTTP answer). What the database knows for every process
(tickets by state, SLA breaches, timer lateness) is read at scrape time by bot/api_v1/scrape.py and
handed to `render` as a `Snapshot`."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REGISTRY = CollectorRegistry(auto_describe=True)
INBOX = Counter("ticketbot_inbox_events", "Inbox rows by platform and outcome (accepted, processed, failed), "
                "this process", ["platform", "outcome"], registry=REGISTRY)
OUTBOX = Counter("ticketbot_outbox_deliveries", "Outbox deliveries by channel-independent outcome (sent, retry, "
                 "dead), this process", ["outcome"], registry=REGISTRY)
WEBHOOKS = Counter("ticketbot_webhook_deliveries", "Webhook delivery attempts by system (API client) and outcome "
                   "(delivered, retry, dead), this process", ["client", "outcome"], registry=REGISTRY)
HTTP = Histogram("ticketbot_http_request_duration_seconds", "HTTP answers by route (its pattern) and status",
                 ["method", "route", "status"], registry=REGISTRY,
                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
TIMER_LATENESS = Histogram("ticketbot_timer_lateness_seconds", "Fired timers: seconds between due and fired "
                           "(all processes, observed at scrape time)", registry=REGISTRY,
                           buckets=(0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0))
T = TypeVar("T")


class _Children(dict[tuple[str, ...], Any]):
    """A metric's children by label values, looked up once: `labels()` takes a lock and checks and
    joins the values on every call, and the inbox counts run twice per message. Nothing removes a
    child from these metrics (no `remove`/`clear`), so a kept child stays the one exported."""

    def __init__(self, metric: Counter | Histogram) -> None:
        super().__init__()
        self._metric = metric

    def __missing__(self, values: tuple[str, ...]) -> Any:
        child = self[values] = self._metric.labels(*values)
        return child


_INBOX_BY = _Children(INBOX)
_OUTBOX_BY = _Children(OUTBOX)
_HTTP_BY = _Children(HTTP)


@dataclass(slots=True)
class Snapshot:
    """What the scrape read from the database."""

    tickets_by_state: dict[str, int] = field(default_factory=dict)
    sla_breaches: int = 0
    webhooks_pending: dict[str, int] = field(default_factory=dict)  # per system: pending or being sent


class _DatabaseCollector(Collector):
    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily("ticketbot_tickets", "Tickets by state", labels=["state"])
        for state, count in sorted(self.snapshot.tickets_by_state.items()):
            states.add_metric([state], count)
        yield states
        yield CounterMetricFamily("ticketbot_sla_breaches", "SLA breaches recorded (audit events sla_breached)",
                                  value=self.snapshot.sla_breaches)
        pending = GaugeMetricFamily("ticketbot_webhook_pending", "Webhook deliveries not yet settled (pending or "
                                    "being sent), per system (all processes)", labels=["client"])
        for client, count in sorted(self.snapshot.webhooks_pending.items()):
            pending.add_metric([client], count)
        yield pending


_DB = _DatabaseCollector()
REGISTRY.register(_DB)


def render(snapshot: Snapshot, lateness: list[float]) -> bytes:
    for seconds in lateness:
        TIMER_LATENESS.observe(max(0.0, seconds))
    _DB.snapshot = snapshot
    return generate_latest(REGISTRY)


def observe_http(request: Any, status: int, seconds: float) -> None:
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "(unmatched)"
    _HTTP_BY[request.method, route, str(status)].observe(seconds)


def count_inbox(accept_row: Callable[..., Awaitable[int | None]]) -> Callable[..., Awaitable[int | None]]:
    """Wrap SqlInbox.accept_row: a new row counts as accepted (a redelivery does not)."""

    @functools.wraps(accept_row)
    async def counted(message: Any, **kwargs: Any) -> int | None:
        row = await accept_row(message, **kwargs)
        if row is not None:
            _INBOX_BY[message.platform, "accepted"].inc()
        return row

    return counted


def count_handling(handle: Callable[[int, Any], Awaitable[bool]]) -> Callable[[int, Any], Awaitable[bool]]:
    """Wrap InboxProcessor.handle_claimed: processed or failed, by the message's platform."""

    @functools.wraps(handle)
    async def counted(row_id: int, message: Any) -> bool:
        ok = await handle(row_id, message)
        _INBOX_BY[message.platform, "processed" if ok else "failed"].inc()
        return ok

    return counted


def count_webhook(client: str, status: str) -> None:
    """One settled webhook attempt (bot/jobs/webhooks.py): `status` is the delivery's new state."""
    WEBHOOKS.labels(client, {"pending": "retry"}.get(status, status)).inc()


def count_outcome(mark: Callable[..., Awaitable[T]], outcome: str) -> Callable[..., Awaitable[T]]:
    """Wrap SqlOutbox.mark_sent (a list of deliveries) / mark_retry / mark_dead (one)."""

    @functools.wraps(mark)
    async def counted(*args: Any, **kwargs: Any) -> T:
        result = await mark(*args, **kwargs)
        _OUTBOX_BY[(outcome,)].inc(len(args[0]) if outcome == "sent" else 1)
        return result

    return counted
