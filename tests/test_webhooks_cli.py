"""`ticketbot webhook …` (a CLI contract): add prints `id` and `secret`; the SSRF guard at add; bad
input gets a clear error and exit 1; `redeliver --failed-since ISO` and `--delivery ID` re-send
through the running service's dispatcher to a real receiver."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from bot.jobs.webhooks import UnsafeUrl, check_url, refused_address
from tests.conftest import runtime_of
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_lifecycle_support import report
from tests.test_webhooks import hub_client, receiver, settled, until  # noqa: F401  (fixtures)


def ticketbot(*args: str, database_url: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}
                   and not k.startswith("WEBHOOK_")}
    environment.update({"DATABASE_URL": database_url, "DATA_DIR": str(cwd / "data"), **env})
    return subprocess.run([sys.executable, "-m", "bot.cli", "webhook", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_add_list_log_remove(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    added = ticketbot("add", "--client", "mes", "--url", "http://127.0.0.1:9/hook", "--events",
                      "ticket.created,ticket.signed,ticket.created", database_url=url, cwd=tmp_path,
                      WEBHOOK_ALLOW_PRIVATE="on")
    assert added.returncode == 0, added.stderr
    body = json.loads(added.stdout)
    assert isinstance(body["id"], int) and len(body["secret"]) == 64 and int(body["secret"], 16) >= 0
    assert body["events"] == ["ticket.created", "ticket.signed"] and body["client"] == "mes"
    assert "not a registered API client" in body["warning"] and "warning" in added.stderr
    listed = json.loads(ticketbot("list", database_url=url, cwd=tmp_path).stdout)
    assert [s["id"] for s in listed] == [body["id"]] and "secret" not in listed[0]
    log = json.loads(ticketbot("log", str(body["id"]), database_url=url, cwd=tmp_path).stdout)
    assert log["subscription"]["url"] == "http://127.0.0.1:9/hook" and log["deliveries"] == []
    removed = ticketbot("remove", str(body["id"]), database_url=url, cwd=tmp_path)
    assert removed.returncode == 0 and json.loads(removed.stdout) == {"id": body["id"], "removed": True}
    again = ticketbot("remove", str(body["id"]), database_url=url, cwd=tmp_path)
    assert again.returncode == 1 and "no active webhook subscription" in again.stderr
    assert json.loads(ticketbot("list", database_url=url, cwd=tmp_path).stdout) == []


@pytest.mark.parametrize("target", ["http://127.0.0.1:8080/hook", "http://localhost:8080/hook"])
def test_private_addresses_are_refused_unless_allowed(tmp_path: Path, target: str) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    refused = ticketbot("add", "--client", "mes", "--url", target, "--events", "ticket.created",
                        database_url=url, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "loopback/private/link-local" in refused.stderr and "WEBHOOK_ALLOW_PRIVATE" in refused.stderr
    allowed = ticketbot("add", "--client", "mes", "--url", target, "--events", "ticket.created",
                        database_url=url, cwd=tmp_path, WEBHOOK_ALLOW_PRIVATE="on")
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.parametrize("target", ["http://10.1.2.3/x", "http://169.254.169.254/latest/meta-data", "http://[::1]:8080/",
                                    "http://0.0.0.0/", "http://192.168.1.20/hook", "http://[::ffff:127.0.0.1]/",
                                    "http://100.64.0.1/", "http://[fe80::1]/", "http://224.0.0.1/"])
async def test_the_guard_refuses_every_non_global_address(target: str) -> None:
    with pytest.raises(UnsafeUrl, match="loopback/private/link-local"):
        await check_url(target, allow_private=False)
    await check_url(target, allow_private=True)


def test_public_addresses_pass_the_guard() -> None:
    assert not refused_address("8.8.8.8") and not refused_address("2606:4700:4700::1111")
    assert refused_address("127.0.0.1") and refused_address("::ffff:10.0.0.1") and refused_address("fe80::1%eth0")


@pytest.mark.parametrize("args, message", [
    (["add", "--client", "mes", "--url", "http://127.0.0.1/h", "--events", "ticket.created,ticket.exploded"],
     "unknown event type(s): ticket.exploded; known: ticket.created, ticket.status_changed"),
    (["add", "--client", "mes", "--url", "http://127.0.0.1/h", "--events", " , "], "no event types given"),
    (["add", "--client", "mes", "--url", "ftp://example.com/h", "--events", "ticket.created"],
     "must start with http:// or https://"),
    (["add", "--client", "mes", "--url", "http://", "--events", "ticket.created"], "URL has no host"),
    (["add", "--client", "mes", "--url", "https://u:p@example.com/h", "--events", "ticket.created"],
     "must not carry a user name or password"),
    (["add", "--client", "mes", "--url", "http://example.com:99999/h", "--events", "ticket.created"], "bad port"),
    (["add", "--client", "", "--url", "http://127.0.0.1/h", "--events", "ticket.created"], "--client"),
    (["redeliver", "--failed-since", "last tuesday"], "not an ISO date/time"),
    (["redeliver", "--delivery", "999"], "no webhook delivery 999"),
    (["log", "999"], "no webhook subscription 999"),
    (["remove", "999"], "no active webhook subscription 999"),
])
def test_bad_input_is_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = ticketbot(*args, database_url=f"sqlite:///{tmp_path / 'w.db'}", cwd=tmp_path,
                       WEBHOOK_ALLOW_PRIVATE="on")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert message in result.stderr and result.stdout == ""


async def test_redeliver_failed_since_and_one_delivery(
        hub_client: TestClient, sqlite_url: str, tmp_path: Path, receiver: WebhookReceiver) -> None:  # noqa: F811
    client = hub_client

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(ticketbot, *args, database_url=sqlite_url, cwd=tmp_path,
                                       WEBHOOK_ALLOW_PRIVATE="on")

    runtime_of(client).webhooks.backoff_base_s = 3600.0  # failures come back only when redelivered
    added = await cli("add", "--client", "mes", "--url", receiver.url("mes"), "--events", "ticket.created")
    assert added.returncode == 0, added.stderr
    subscription = json.loads(added.stdout)
    mes = receiver.endpoint("mes", secret=subscription["secret"], fail_always=True)
    before = datetime.now(UTC) - timedelta(seconds=1)
    await report(client, "cust-cli-1")
    await until(lambda: mes.requests == 1)
    deadline = time.monotonic() + 5
    while not (log := json.loads((await cli("log", str(subscription["id"]))).stdout))["deliveries"] or \
            not log["deliveries"][0]["last_error"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    failed = log["deliveries"][0]
    assert failed["status"] == "pending" and failed["attempts"] == 1
    assert failed["attempt_log"][0]["status_code"] == 500
    nothing = await cli("redeliver", "--failed-since", (datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert json.loads(nothing.stdout)["redelivered"] == 0
    mes.fail_always = False
    redone = await cli("redeliver", "--failed-since", before.isoformat())
    assert redone.returncode == 0 and json.loads(redone.stdout)["redelivered"] == 1, redone.stderr
    await until(lambda: len(mes.events) == 1)
    assert mes.events[0]["id"] == failed["event_id"]
    # one delivery again, whatever its state: the receiver sees the same event id and dedupes
    one = await cli("redeliver", "--delivery", str(failed["id"]))
    assert json.loads(one.stdout) == {"redelivered": 1, "delivery": failed["id"]}
    await until(lambda: mes.duplicates == 1)
    final = await settled(client, subscription["id"], lambda d: d["attempts"] == 3 and d["status"] == "delivered")
    assert json.loads((await cli("log", str(subscription["id"]))).stdout)["deliveries"][0] == final
    assert [a["status_code"] for a in final["attempt_log"]] == [500, 200, 200]
