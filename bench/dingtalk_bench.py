"""DingTalk stream benchmark: fault reports through the stream thread into the real service.

The real Runtime (SQLite under a temporary folder, inbox, conversation, outbox, dispatcher) with
the DingTalk adapter connected to the fake DingTalk on loopback (tests/fakes/dingtalk_gateway.py).
Phases, in the same run:

- ignored: `--messages` frames on an unknown topic (acked by the stream thread, no inbox) -> acks/s;
- reports: `--messages` robot text messages from distinct staff ids (new customer, ticket, offer,
  replies) -> acks/s (each ack follows the inbox commit), p50/p99 ack latency, and the time until
  every "ticket created" reply reached the fake's batchSend;
- the application loop's worst lag during the reports (a 10 ms ticker).

The ratio reports/ignored says what the inbox commit costs on top of the stream path itself.

    python bench/dingtalk_bench.py [--messages 300] [--database-url postgresql://…/empty_db]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests.fakes` importable

from tests.fakes.dingtalk_gateway import (  # noqa: E402
    TOPIC_ROBOT,
    FakeDingTalkGateway,
    RobotOut,
    callback_frame,
    robot_message,
)

FAULTS = ["3号线注塑机异响", "二号厂房空压机漏气", "包装线传送带跑偏", "洗衣机脱水时异响"]


async def run(messages: int, database_url: str | None = None) -> None:
    gateway = FakeDingTalkGateway()
    os.environ["DINGTALK_OPENAPI_ENDPOINT"] = await gateway.start()
    from bot.runtime import Runtime
    from bot.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(_env_file=None, data_dir=Path(folder), database_url=database_url,  # type: ignore[call-arg]
                            dingtalk_client_id="bench-app", dingtalk_client_secret="bench-secret")
        runtime = Runtime(settings)
        await runtime.prepare_database()
        await runtime.start()
        await runtime.rulebook.warm()
        await gateway.wait_connections(1, timeout=30)
        try:
            ignored = await _phase(gateway, [callback_frame("/v1.0/bench/ignored", {"i": i}, f"ign-{i}")
                                             for i in range(messages)])
            lags: list[float] = []
            ticker = asyncio.create_task(_tick(lags))
            frames = [callback_frame(TOPIC_ROBOT, robot_message(msg_id=f"m-{i}", sender=f"bench-{i}",
                                                                 text=FAULTS[i % len(FAULTS)]), f"rep-{i}")
                      for i in range(messages)]
            started = time.perf_counter()
            reports = await _phase(gateway, frames)
            await gateway.wait_for(lambda: _created(gateway) >= messages, timeout=600)
            replied_s = time.perf_counter() - started
            ticker.cancel()
        finally:
            await runtime.stop()
            await gateway.close()
    ignored_rate, _ = ignored
    report_rate, latencies = reports
    p50 = statistics.median(latencies) * 1000
    p99 = sorted(latencies)[max(0, int(len(latencies) * 0.99) - 1)] * 1000
    print(f"database                : {'SQLite (temporary)' if database_url is None else database_url}")
    print(f"messages per phase      : {messages}")
    print(f"ignored frames (no inbox): {ignored_rate:8.0f} acks/s")
    print(f"fault reports (inbox)   : {report_rate:8.0f} acks/s   ack p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"all replies delivered   : {replied_s:8.2f} s   ({messages / replied_s:.0f} tickets/s end to end)")
    print(f"app loop worst lag      : {max(lags) * 1000:8.0f} ms")
    print(f"ratio reports/ignored   : {report_rate / ignored_rate:8.2f}")


async def _phase(gateway: FakeDingTalkGateway, frames: list[dict[str, Any]]) -> tuple[float, list[float]]:
    pushed: dict[str, float] = {}
    acked: dict[str, float] = {}

    async def stamp(ack: dict[str, Any]) -> None:
        acked[ack["headers"]["messageId"]] = time.perf_counter()

    gateway.ack_observers.append(stamp)
    started = time.perf_counter()
    for frame in frames:
        pushed[frame["headers"]["messageId"]] = time.perf_counter()
        await gateway.push(frame)
    await gateway.wait_for(lambda: all(k in acked for k in pushed), timeout=600)
    elapsed = time.perf_counter() - started
    gateway.ack_observers.remove(stamp)
    return len(frames) / elapsed, [acked[k] - pushed[k] for k in pushed]


def _created(gateway: FakeDingTalkGateway) -> int:
    return sum("已为您创建工单" in RobotOut.of(r).text for r in gateway.delivered)


async def _tick(lags: list[float]) -> None:
    while True:
        start = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - start - 0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--database-url", default=None, help="an EMPTY database (default: SQLite in a temp folder)")
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.database_url))


if __name__ == "__main__":
    main()
