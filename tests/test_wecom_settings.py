"""WECOM_* settings → WeComConfig: what can never work is refused at start-up, clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.platforms.wecom import WeComSettingsError, config_from_settings
from bot.settings import Settings

GOOD = {
    "wecom_corp_id": " ww0123456789abcdef ",
    "wecom_agent_id": "1000002",
    "wecom_secret": "s3cret",
    "wecom_token": "tok",
    "wecom_encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
}


def settings(tmp_path: Path, **overrides: str) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **{**GOOD, **overrides})  # type: ignore[call-arg,arg-type]


def test_settings_become_the_adapter_config(tmp_path: Path) -> None:
    config = config_from_settings(settings(tmp_path, wecom_api_base="http://10.0.0.5/cgi-bin"))
    assert config.corp_id == "ww0123456789abcdef"  # pasted with spaces: trimmed
    assert config.agent_id_int == 1000002
    assert config.api_base_url == "http://10.0.0.5/cgi-bin/"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("wecom_agent_id", "工单助手", "WECOM_AGENT_ID must be the app's numeric AgentId"),
        ("wecom_encoding_aes_key", "tooshort", "WECOM_ENCODING_AES_KEY must be 43 characters"),
        ("wecom_secret", "  ", "missing WeCom settings: WECOM_SECRET"),
    ],
)
def test_impossible_settings_are_refused(tmp_path: Path, field: str, value: str, message: str) -> None:
    with pytest.raises(WeComSettingsError, match=message):
        config_from_settings(settings(tmp_path, **{field: value}))


def test_the_runtime_refuses_to_start_with_them(tmp_path: Path) -> None:
    from bot.runtime import Runtime

    with pytest.raises(WeComSettingsError):
        Runtime(settings(tmp_path, wecom_agent_id="abc", database_url=f"sqlite:///{tmp_path / 'x.db'}"))
