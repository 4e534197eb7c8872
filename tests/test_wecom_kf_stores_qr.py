"""`ticketbot stores qr --out DIR`: one PNG and one SVG per active store; the code encodes the
store's 微信客服 contact-way URL (kf/add_contact_way, scene = store code, cached) when 微信客服 is
configured, else the store's report page PUBLIC_BASE_URL/r/<code>. segno cannot decode, so each
file is compared with the one segno makes from the URL the summary names."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import segno

from bot.cli.root import main
from bot.cli.stores_qr import file_stem
from storage.database import Sessions
from storage.tables import StoreRow
from tests.fakes.wecom_kf_server import FakeWeComKf
from tests.fakes.wecom_server import SAMPLE_AES_KEY

STORES = [StoreRow(id="S01", name="浦东一店", lat=31.2, lng=121.5),
          StoreRow(id="门店/二", name="二店", lat=31.1, lng=121.4),
          StoreRow(id="S99", name="已关闭", lat=31.0, lng=121.0, active=False)]


async def _add_stores(sessions: Sessions) -> None:
    async with sessions() as session:
        session.add_all([StoreRow.model_validate(s.model_dump()) for s in STORES])
        await session.commit()


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://tb.example.com/")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _same_code(item: dict, url: str) -> None:  # type: ignore[type-arg]
    """The files are exactly what segno makes of `url` (the PNG compared pixel for pixel)."""
    png, svg = Path(item["png"]), Path(item["svg"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 200
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    expected = png.with_name("expected.png")
    segno.make(url, error="m", micro=False).save(expected, scale=8, border=4)
    assert expected.read_bytes() == png.read_bytes()
    expected.unlink()


async def test_without_wecom_kf_the_codes_open_the_store_report_pages(
        sqlite_url: str, sqlite_sessions: Sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    await _add_stores(sqlite_sessions)
    _env(monkeypatch, tmp_path, sqlite_url)
    out = tmp_path / "qr"
    code, summary = await asyncio.to_thread(_run, capsys, "stores", "qr", "--out", str(out))
    assert code == 0 and summary["target"] == "report_page" and summary["failed"] == []
    by_store = {s["store"]: s for s in summary["stores"]}
    assert set(by_store) == {"S01", "门店/二"}  # the closed store has no code
    assert by_store["S01"]["url"] == "https://tb.example.com/r/S01"
    assert by_store["门店/二"]["url"] == "https://tb.example.com/r/%E9%97%A8%E5%BA%97%2F%E4%BA%8C"
    assert Path(by_store["门店/二"]["png"]).parent == out and "/" not in file_stem("门店/二")
    for item in by_store.values():
        _same_code(item, item["url"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{file_stem(s)}.{ext}" for s in by_store for ext in ("png", "svg"))


async def test_with_wecom_kf_the_codes_open_the_store_chat_and_contact_ways_are_cached(
        sqlite_url: str, sqlite_sessions: Sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeWeComKf()
    await fake.start()
    try:
        await _add_stores(sqlite_sessions)
        _env(monkeypatch, tmp_path, sqlite_url)
        for name, value in {"WECOM_CORP_ID": fake.corp_id, "WECOM_TOKEN": "t", "WECOM_ENCODING_AES_KEY": SAMPLE_AES_KEY,
                            "WECOM_API_BASE": fake.base_url, "WECOM_KF_SECRET": fake.kf_secret,
                            "WECOM_KF_OPEN_KFID": "wkSTORE0001"}.items():
            monkeypatch.setenv(name, value)
        code, summary = await asyncio.to_thread(_run, capsys, "stores", "qr", "--out", str(tmp_path / "kf"))
        assert code == 0 and summary["target"] == "wecom_kf"
        by_store = {s["store"]: s for s in summary["stores"]}
        s01 = urlsplit(by_store["S01"]["url"])
        assert s01.netloc == "work.weixin.qq.com"
        assert parse_qs(s01.query)["scene_param"] == ["S01"] and parse_qs(s01.query)["enc_scene"] == ["ENCS01"]
        assert parse_qs(urlsplit(by_store["门店/二"]["url"]).query)["scene_param"] == ["门店/二"]
        for item in by_store.values():
            _same_code(item, item["url"])
        asked = [r.json for r in fake.requests if r.path.endswith("kf/add_contact_way")]
        assert len(asked) == 2 and {"open_kfid": "wkSTORE0001", "scene": "S01"} in asked

        code, again = await asyncio.to_thread(_run, capsys, "stores", "qr", "--out", str(tmp_path / "kf2"))
        assert code == 0 and [s["url"] for s in again["stores"]] == [s["url"] for s in summary["stores"]]
        assert len([r for r in fake.requests if r.path.endswith("kf/add_contact_way")]) == 2  # cached
    finally:
        await fake.close()
