"""bench/intake.py's customer doors (issue 24): a short real run of 微信客服 (`kf`), the report page and API v1,
each through its real protocol into `ticketbot serve` (kf: the fake kf API in its own process), must count
fully processed tickets and print its row beside the echo ceiling and the playground's CPU ratio."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOORS = ("kf", "report-page", "api")


def short_run(doors: tuple[str, ...]) -> str:
    """bench/intake.py through `doors` for 2 s at a low open-loop rate: its output."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "intake.py"), "--via", *doors, "--duration", "2",
                           "--rate", "15", "--warm-up", "5", "--drain", "60"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def assert_fully_processed(out: str, door: str) -> None:
    row = re.search(rf"^{re.escape(door)}\s+(\d+)\s+(\d+)\s.*?(\d+) accepted, (\d+) fully processed", out, re.M)
    assert row is not None, f"no row for {door}:\n{out}"
    accepted_rate, processed_rate, accepted, processed = map(int, row.groups())
    assert min(accepted_rate, accepted, processed, processed_rate) > 0, f"{door} counted nothing:\n{out}"
    # a low open-loop rate: everything accepted is fully processed once drained
    assert processed == accepted, f"{door}: {processed} of {accepted} fully processed:\n{out}"


def test_every_customer_door_processes_tickets_and_prints_its_row() -> None:
    out = short_run(DOORS)
    assert re.search(r"^echo\s+\d+\s", out, re.M), out  # the ceiling, with the first door's requests
    assert "(kf's requests)" in out, out
    assert re.search(r"^playground\s+\d+\s+\d+\s", out, re.M), out  # added for the ratio
    for door in DOORS:
        assert_fully_processed(out, door)
        assert re.search(rf"^{re.escape(door)}: .*CPU \d+\.\d\dx the playground's", out, re.M), out


def test_every_chat_door_processes_tickets_and_prints_its_row() -> None:
    """The same for the chat doors (WeCom callbacks, Feishu event pushes, DingTalk stream frames), whose
    set-up bench/intake_callgrind.py shares (`http_door`, `DingTalkDoor`)."""
    chat_doors = ("playground", "wecom", "feishu", "dingtalk")
    out = short_run(chat_doors)
    for door in chat_doors:
        assert_fully_processed(out, door)
