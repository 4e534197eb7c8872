"""Every setting is listed in .env.example and in the README's configuration table."""

from __future__ import annotations

from pathlib import Path

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_in_env_example_and_the_readme() -> None:
    env_example = (ROOT / ".env.example").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = [name.upper() for name in Settings.model_fields]
    assert "PROCESS_INBOX" in names and "DATABASE_URL" in names
    assert [n for n in names if n not in env_example] == []
    assert [n for n in names if f"| `{n}` |" not in readme] == []
