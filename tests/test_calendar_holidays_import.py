"""python-holidays is loaded on the first business-calendar question, and then China's module only, not the
package's ~250 other countries (core/sla/calendar.py `_china`): less memory (issue 24, idle RSS) and a first
calendar year in ~30 ms instead of ~90 (the first fault report after a start waits for it on the loop).
Runs in a fresh interpreter: this test session has imported everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CODE = """
import json, sys
from core.sla import calendar
before = "holidays" in sys.modules
year = calendar._statutory_year(2025)
countries = "holidays.countries" in sys.modules
import holidays
reference = holidays.China(years=(2025, 2026), language="zh_CN")
print(json.dumps({"before": before, "countries": countries,
                  "same": {str(d): str(n) for d, n in reference.items() if d.year == 2025}
                          == {str(d): n for d, n in year.days_off.items()},
                  "makeup": sorted(str(d) for d in year.makeup_workdays), "known": year.notice_known}))
"""


def test_the_calendar_loads_china_without_the_other_countries(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CODE], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["before"] is False  # importing the calendar loads no holidays
    assert figures["countries"] is False  # China's module alone
    assert figures["same"] is True  # the same days off as the package's own China class (imported afterwards)
    assert figures["makeup"] == ["2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11"]
    assert figures["known"] is True
