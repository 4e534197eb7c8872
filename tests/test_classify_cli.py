"""`ticketbot classify`: one JSON object per input line, with the rules the service uses (a CLI contract)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from bot.rules.rulebook import RULES_KIND, shipped_rules
from nlp.rule_changes import AddKeywords, apply_change
from storage.database import create_engine, session_factory
from storage.migrate import upgrade
from storage.unit_of_work import SqlUnitOfWork
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser

CONTRACT_KEYS = {"text", "category", "keywords", "negated", "score", "intent", "runner_up"}


def run_cli(args: list[str], database_url: str, cwd: Path,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "TICKETBOT_"))}
    env["DATABASE_URL"] = database_url
    command = [shutil.which("ticketbot") or "", "classify", *args]
    if not command[0]:
        command = [sys.executable, "-m", "bot.cli", "classify", *args]
    return subprocess.run(command, input=stdin, capture_output=True, env=env, cwd=cwd, timeout=120, check=False)


def objects(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]


def store_rules(database_url: str, payload: dict[str, Any]) -> None:
    upgrade(database_url)

    async def save() -> None:
        engine = create_engine(database_url)
        try:
            async with SqlUnitOfWork(session_factory(engine)) as uow:
                await uow.save_config(RULES_KIND, payload, actor_id="admin", note="test", at=datetime.now(UTC))
                await uow.commit()
        finally:
            await engine.dispose()

    asyncio.run(save())


def test_stdin_lines_become_json_lines(tmp_path: Path) -> None:
    lines = ["底盘有异响", "", "   ", "你好", "没有异响，就是黑屏", "方向盤抖動", "ＯＢＤ报故障码Ｕ0100",
             "😭😭 刹车🔥异响", "my car makes a noise, 发动机故障灯亮了", "'; DROP TABLE tickets; -- .*",
             "师傅" + "很" * 10_000 + "抖动"]
    bad_bytes = b"\xff\xfe " + "你好".encode() + b"\n"
    raw = ("\n".join(lines[:5]) + "\r\n" + "\n".join(lines[5:]) + "\n").encode() + bad_bytes
    result = run_cli([], f"sqlite:///{tmp_path / 'absent.db'}", tmp_path, raw)
    out = objects(result)
    assert len(out) == len(lines) + 1  # one object per input line, blank ones included
    assert all(set(o) >= CONTRACT_KEYS for o in out)
    assert [o["text"] for o in out[:-1]] == lines
    assert [o["category"] for o in out[:-1]] == ["机械类", None, None, None, "电控类", "机械类", "电控类", "机械类",
                                              "电控类", None, None]
    assert out[1]["intent"] == out[2]["intent"] == "empty" and out[3]["intent"] == "greeting"
    assert out[4]["keywords"] == ["黑屏"] and out[4]["negated"] == ["异响"] and out[4]["score"] > 0
    assert out[-2]["truncated"] is True
    assert out[-1]["text"] == "\ufffd\ufffd 你好" and out[-1]["intent"] == "greeting"  # bad bytes replaced
    assert all(o["rules_version"] == 0 for o in out) and "evidence" not in out[0]
    assert not (tmp_path / "absent.db").exists()  # reading never creates a database
    assert result.stderr == b""


def test_arguments_instead_of_stdin_and_explain(tmp_path: Path) -> None:
    out = objects(run_cli(["--explain", "中控黑屏", "谢谢"], f"sqlite:///{tmp_path / 'x.db'}", tmp_path))
    assert [(o["text"], o["category"], o["intent"]) for o in out] == [("中控黑屏", "电控类", "fault"),
                                                                      ("谢谢", None, "thanks")]
    assert [(e["keyword"], e["kind"]) for e in out[0]["evidence"]] == [(None, "hint"), ("黑屏", "keyword")]


def test_the_newest_stored_rules_are_used(database_url: str, tmp_path: Path) -> None:
    changed = apply_change(shipped_rules(), AddKeywords("机械类", ("雨刮器",))).rules
    store_rules(database_url, changed.to_dict())
    out = objects(run_cli(["雨刮器坏了", "中控黑屏"], database_url, tmp_path))
    assert [(o["category"], o["rules_version"]) for o in out] == [("机械类", 1), ("电控类", 1)]
    assert out[0]["keywords"] == ["雨刮器"]


def test_unreachable_database_falls_back_to_defaults_with_a_note(tmp_path: Path) -> None:
    result = run_cli(["底盘有异响"], "postgresql://nobody@127.0.0.1:1/none", tmp_path)
    assert objects(result)[0]["category"] == "机械类"
    assert "using the shipped default rules" in result.stderr.decode()


async def test_cli_and_running_service_agree(app_client: TestClient, database_url: str, tmp_path: Path) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 添加 机械类 雨刮器")
    await admin.say("规则 删除 电控类 黑屏")
    corpus = (Path(__file__).parent / "data" / "nlp_corpus.tsv").read_text(encoding="utf-8").splitlines()
    texts = [line.split("\t", 1)[1] for line in corpus if line and not line.startswith("#")]
    texts += ["雨刮器坏了", "中控黑屏"]
    result = await asyncio.to_thread(run_cli, [], database_url, tmp_path, "\n".join(texts).encode() + b"\n")
    service = runtime_of(app_client).rulebook
    expected = [{k: v for k, v in service.classify(t).to_json_dict().items() if k != "evidence"} for t in texts]
    assert objects(result) == expected
    assert expected[-2]["category"] == "机械类" and expected[-1]["rules_version"] == 2
