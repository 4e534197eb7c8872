"""The `ticketbot` script: scripts installed by earlier releases call `bot.cli:main`, so that target
must stay importable and callable whatever the CLI's modules are called (a moved module once made
an installed script fail with "'module' object is not callable")."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_script_target_is_the_one_installed_scripts_call() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts == {"ticketbot": "bot.cli:main"}
    module, _, name = scripts["ticketbot"].partition(":")
    assert callable(getattr(importlib.import_module(module), name))


def test_a_script_as_pip_writes_it_runs() -> None:
    # What pip's generated script does: `from bot.cli import main; sys.exit(main())`.
    run = subprocess.run([sys.executable, "-c", "import sys; from bot.cli import main; sys.argv[1:] = ['--help'];"
                          " sys.exit(main())"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "usage: ticketbot" in run.stdout
