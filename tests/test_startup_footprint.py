"""Issue 24 (idle RSS ≤ 150 MB): what `ticketbot serve` loads before anything happens. A large library that
only some requests need is imported by the first of them, not at start-up. Checked in a fresh interpreter,
the app built as `ticketbot serve` builds it (no platform configured, the playground on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
from datetime import UTC, datetime
from bot.settings import Settings
from bot.web.app import build_app
from core.model import Ticket, TicketStatus
from bot.web.api import RUNTIME

app = build_app(Settings(), prepare=False)
at_start = "cryptography" in sys.modules
links = app[RUNTIME].tracking
now = datetime.now(UTC)
ticket = Ticket(number="GD-20260101-0001", customer_id="c", description="d", status=TicketStatus.PENDING_DISPATCH,
                created_at=now, updated_at=now)
token = links.token_for(ticket)
print(json.dumps({"at_start": at_start, "after_link": "cryptography" in sys.modules,
                  "decoded": links.decode(token)}))
"""


def test_the_tracking_links_cipher_is_loaded_by_the_first_link_not_at_start_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WECOM_", "FEISHU_", "DINGTALK_", "SMS_")) and k not in ("REDIS_URL",)}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}", DATA_DIR=str(tmp_path), PLAYGROUND="on",
               PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"at_start": False, "after_link": True, "decoded": ["GD-20260101-0001", 0]}
