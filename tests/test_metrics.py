"""GET /metrics: Prometheus text with inbox, outbox, tickets by state, SLA breaches, timer lateness
and HTTP latency; guarded by METRICS_TOKEN, else loopback only."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.web.app import build_app
from tests.api_v1_support import new_ticket, register
from tests.conftest import make_settings
from tests.playground_client import PlaygroundUser


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


async def test_metrics_text_has_the_series(sqlite_url: str, tmp_path: Path) -> None:
    app = build_app(make_settings(sqlite_url, tmp_path))
    async with TestClient(TestServer(app)) as client:
        auth = await register(client, "yida")
        assert (await client.post("/api/v1/tickets", json=new_ticket("M-1"), headers=auth)).status == 201
        await PlaygroundUser(client, "cust-metrics").say("空调不制冷")
        resp = await client.get("/metrics")  # the test client is loopback
        assert resp.status == 200 and resp.content_type == "text/plain"
        samples = _samples(await resp.text())
        tickets = sum(v for (name, labels), v in samples.items() if name == "ticketbot_tickets")
        assert tickets == 2
        assert samples[("ticketbot_inbox_events_total", (("outcome", "accepted"), ("platform", "local")))] >= 1
        assert samples[("ticketbot_inbox_events_total", (("outcome", "processed"), ("platform", "local")))] >= 1
        assert ("ticketbot_sla_breaches_total", ()) in samples
        assert any(name == "ticketbot_http_request_duration_seconds_count" and ("route", "/api/v1/tickets") in labels
                   and ("status", "201") in labels for name, labels in samples)
        assert any(name == "ticketbot_http_request_duration_seconds_count"
                   and ("route", "/playground/api/messages") in labels for name, labels in samples)
        assert any(name == "ticketbot_timer_lateness_seconds_count" for name, _ in samples)


async def test_metrics_token_guards_the_endpoint(sqlite_url: str, tmp_path: Path) -> None:
    app = build_app(make_settings(sqlite_url, tmp_path, metrics_token="scrape-me"))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/metrics")).status == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})).status == 200


def test_only_loopback_without_a_token() -> None:
    from bot.api_v1.scrape import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1")
    assert not _loopback("10.0.0.5") and not _loopback(None) and not _loopback("unix")


async def test_delivery_outcomes_are_counted() -> None:
    """The wrappers the runtime puts on SqlOutbox's marks (no platform delivers in these tests)."""
    from bot.metrics import OUTBOX, count_outcome

    async def mark(*args: object, **kwargs: object) -> None:
        return None

    before = OUTBOX.labels("dead")._value.get()
    await count_outcome(mark, "dead")(1, "gone")
    assert OUTBOX.labels("dead")._value.get() == before + 1


async def test_timer_lateness_is_observed_once_per_fired_timer(sqlite_url: str, tmp_path: Path) -> None:
    from datetime import timedelta

    from sqlalchemy import insert

    from bot.web.api import RUNTIME
    from storage.tables import TimerRowTable

    app = build_app(make_settings(sqlite_url, tmp_path))
    async with TestClient(TestServer(app)) as client:
        runtime = client.app[RUNTIME]
        now = runtime.clock.now()

        def lateness(text: str) -> tuple[float, float]:
            s = _samples(text)
            return s[("ticketbot_timer_lateness_seconds_count", ())], s[("ticketbot_timer_lateness_seconds_sum", ())]

        before = lateness(await (await client.get("/metrics")).text())
        async with runtime.engine.begin() as conn:
            await conn.execute(insert(TimerRowTable).values(
                kind="bench", ticket_key="T-1", due_at=now - timedelta(seconds=10), generation=1, state="fired",
                payload={}, fired_at=now - timedelta(seconds=7)))
        first = lateness(await (await client.get("/metrics")).text())
        assert first[0] == before[0] + 1 and abs(first[1] - before[1] - 3.0) < 0.01
        again = lateness(await (await client.get("/metrics")).text())
        assert again == first  # not observed twice
