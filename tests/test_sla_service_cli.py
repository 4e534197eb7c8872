"""`ticketbot sla explain` (a CLI contract) gives the same deadlines as the service, and `ticketbot worker`
refuses to start without Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from core.clock import FixedClock
from core.sla.matrix import SlaMatrix
from core.sla.stored_config import SLA_KIND
from tests.playground_client import PlaygroundUser
from tests.sla_support import at, fixed_clock_app, report, runtime, ticket


def ticketbot(*args: str, database_url: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    environment.update({"DATABASE_URL": database_url, "DATA_DIR": str(cwd / "data"), **env})
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=120)


def test_explain_json_with_the_shipped_defaults(tmp_path: Path) -> None:
    result = ticketbot("sla", "explain", "--priority", "紧急", "--impact", "全厂", "--at", "2026-11-20T17:50+08:00",
                       "--json", database_url=f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["cell"] == "紧急×全厂×工作时间"
    assert data["clock"] == "wall"
    assert data["response_due"] == "2026-11-20T18:05:00+08:00"
    assert data["resolution_due"] == "2026-11-20T19:50:00+08:00"
    assert not (tmp_path / "none.db").exists()  # reading never creates a database

    text = ticketbot("sla", "explain", "--priority", "normal", "--impact", "user", "--at", "2026-11-20T17:50+08:00",
                     database_url=f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path)
    assert text.returncode == 0 and "常规 × 单用户 × 工作时间（工作时间计时）" in text.stdout
    assert "截止 2026-11-23 11:50（周一）" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--priority", "特急", "--impact", "全厂", "--at", "2026-11-20T17:50+08:00"], "无法识别的优先级「特急」"),
        (["--priority", "紧急", "--impact", "全世界", "--at", "2026-11-20T17:50+08:00"], "无法识别的影响范围"),
        (["--priority", "紧急", "--impact", "全厂", "--at", "2026-11-20T17:50"], "缺少时区"),
        (["--priority", "紧急", "--impact", "全厂", "--at", "下周五"], "无法识别的时间"),
    ],
)
def test_explain_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = ticketbot("sla", "explain", *args, "--json", database_url=f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and result.stdout == ""


async def test_explain_uses_the_stored_matrix_and_calendar_like_the_service(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(at(2026, 11, 18, 9, 0))
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        admin = PlaygroundUser(client, "admin")
        await admin.say("SLA 设置 常规 单用户 工作时间 响应 90 解决 600")
        await admin.say("节假日 设置 2026-11-19 休息 停产检修")
        number = await report(client, "cust-cli-1", "中控黑屏")
        t = await ticket(rt, number)
        async with rt.uow() as uow:
            assert (await uow.latest_config(SLA_KIND))[0] == 1  # type: ignore[index]
    result = ticketbot("sla", "explain", "--priority", "常规", "--impact", "单用户", "--at", "2026-11-18T09:00+08:00",
                       "--json", database_url=database_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert datetime.fromisoformat(data["response_due"]) == t.response_due == at(2026, 11, 18, 10, 30)
    # 10 business hours: 9 on Wednesday, Thursday is overridden as a day off, 1 on Friday.
    assert datetime.fromisoformat(data["resolution_due"]) == t.resolution_due == at(2026, 11, 20, 9, 0)
    assert SlaMatrix.default().cell("常规", "单用户", "工作时间").response.total_seconds() == 4 * 3600


def test_worker_needs_redis(tmp_path: Path) -> None:
    result = ticketbot("worker", database_url=f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert result.returncode == 2 and "REDIS_URL" in result.stderr
