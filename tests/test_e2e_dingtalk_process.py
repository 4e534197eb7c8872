"""`ticketbot dingtalk`: the stream client and the DingTalk outbox in a process of their own."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.fakes.dingtalk_gateway import DingTalkUser, FakeDingTalkGateway
from tests.test_e2e_dingtalk import CREATED, gateway, number_in  # noqa: F401 - `gateway` is a fixture

REPO = Path(__file__).resolve().parents[1]


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DINGTALK_", "WECOM_", "FEISHU_"))}
    # The child runs in a scratch folder (no stray .env is read there) on this checkout's code.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(values)
    return env


async def test_ticketbot_dingtalk_serves_a_user_and_stops_on_sigterm(
    database_url: str, tmp_path: Path, gateway: FakeDingTalkGateway  # noqa: F811
):
    env = _env(
        DINGTALK_CLIENT_ID="ding-app",
        DINGTALK_CLIENT_SECRET="s3cret",
        DINGTALK_OPENAPI_ENDPOINT=gateway.base_url,
        DATABASE_URL=database_url,
        DATA_DIR=str(tmp_path / "data"),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "dingtalk",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await gateway.wait_connections(1, timeout=60)
        user = DingTalkUser(gateway, "staff-proc-1")
        frame_id = await user.say("洗衣机脱水时异响")
        # A child process on a busy machine: generous timeouts (its first ticket loads jieba, the SLA calendar).
        assert (await gateway.wait_ack(frame_id, timeout=60))["code"] == 200
        reply = await user.wait_message(lambda m: CREATED in m.text, timeout=60)
        assert number_in(reply.text)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "stream client running" in stdout.decode() and "stopped" in stdout.decode()


async def test_ticketbot_dingtalk_refuses_to_start_without_credentials(tmp_path: Path):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "dingtalk",
        env=_env(DATA_DIR=str(tmp_path / "data")), cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "DINGTALK_CLIENT_ID" in stdout.decode()
