"""Phone confirmation codes: 6 digits sent through the provider, hashed at rest, 10 minutes, 5 guesses,
one use, a minute between codes, and the per-phone hourly SMS limit (durable: in the database)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.runtime import Runtime
from bot.sms.codes import check_code, send_code
from bot.sms.errors import BadPhone, SmsLimitReached, SmsNotConfigured, SmsPermanent
from core.clock import FixedClock
from storage.tables_sms import SmsCodeRow, SmsSendRow
from tests.conftest import make_settings
from tests.fakes.sms_provider import FakeSmsProvider
from tests.sms_support import sms_runtime, sms_settings

PHONE = "13800138000"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 12, 6, 10, 0, tzinfo=UTC))


@pytest.fixture(params=["aliyun", "tencent"])
async def runtime(request: pytest.FixtureRequest, database_url: str, tmp_path: Path, sms_fake: FakeSmsProvider,
                  clock: FixedClock) -> AsyncIterator[Runtime]:
    async with sms_runtime(sms_settings(database_url, tmp_path, sms_fake, request.param,
                                        sms_limit_per_phone_hour=3), clock) as rt:
        yield rt


def last_code(sms_fake: FakeSmsProvider) -> str:
    params = sms_fake.sent[-1].params
    return str(params["code"] if isinstance(params, dict) else params[0])


async def test_a_code_is_sent_hashed_at_rest_and_used_once(runtime: Runtime, sms_fake: FakeSmsProvider) -> None:
    await send_code(runtime, "+86 138-0013-8000")
    code = last_code(sms_fake)
    assert re.fullmatch(r"\d{6}", code) and sms_fake.sent[-1].template in {"SMS_100001", "100001"}
    async with runtime.sessions() as session:
        row = (await session.execute(select(SmsCodeRow))).scalar_one()
        log = (await session.execute(select(SmsSendRow))).scalars().all()
    assert row.phone == PHONE and code not in row.code_mac and len(row.code_mac) == 64
    assert [(r.kind, r.state) for r in log] == [("code", "sent")]
    assert await check_code(runtime, PHONE, code, consume=False)  # a peek (the prefill) keeps it
    assert await check_code(runtime, "138 0013 8000", code)
    assert not await check_code(runtime, PHONE, code)  # used up: a double submit confirms once


async def test_five_wrong_guesses_kill_the_code(runtime: Runtime, sms_fake: FakeSmsProvider) -> None:
    await send_code(runtime, PHONE)
    code = last_code(sms_fake)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert not await check_code(runtime, PHONE, wrong)
    assert not await check_code(runtime, PHONE, code)


async def test_a_code_expires_after_ten_minutes(runtime: Runtime, sms_fake: FakeSmsProvider, clock: FixedClock) -> None:
    await send_code(runtime, PHONE)
    clock.advance(timedelta(minutes=10, seconds=1))
    assert not await check_code(runtime, PHONE, last_code(sms_fake))


async def test_malformed_codes_are_wrong_guesses(runtime: Runtime, sms_fake: FakeSmsProvider) -> None:
    await send_code(runtime, PHONE)
    for bad in ("", "12345", "1234567", "abcdef", "１２３４５６"):
        assert not await check_code(runtime, PHONE, bad)
    assert not await check_code(runtime, "13900000000", last_code(sms_fake))  # another phone has no code


async def test_resend_waits_a_minute_and_the_hourly_limit_holds(runtime: Runtime, sms_fake: FakeSmsProvider,
                                                                clock: FixedClock) -> None:
    await send_code(runtime, PHONE)
    with pytest.raises(SmsLimitReached) as raised:
        await send_code(runtime, PHONE)
    assert "频繁" in raised.value.user_message
    for _ in range(2):
        clock.advance(timedelta(minutes=2))
        await send_code(runtime, PHONE)
    clock.advance(timedelta(minutes=2))
    with pytest.raises(SmsLimitReached) as limited:  # the fourth within the hour (limit 3)
        await send_code(runtime, PHONE)
    assert len(sms_fake.sent) == 3 and 50 * 60 <= limited.value.retry_after_s <= 60 * 60
    clock.advance(timedelta(minutes=55))  # the first one left the window
    await send_code(runtime, PHONE)
    assert len(sms_fake.sent) == 4


async def test_a_refused_send_does_not_count_and_leaves_no_code(runtime: Runtime, sms_fake: FakeSmsProvider) -> None:
    sms_fake.templates.clear()
    with pytest.raises(SmsPermanent) as raised:
        await send_code(runtime, PHONE)
    assert raised.value.user_message == "验证码短信发送失败，请稍后再试。"
    async with runtime.sessions() as session:
        assert (await session.execute(select(SmsCodeRow))).first() is None
        assert (await session.execute(select(SmsSendRow))).first() is None


async def test_bad_phones_are_refused_before_anything_is_sent(runtime: Runtime, sms_fake: FakeSmsProvider) -> None:
    for phone in ("12345", "021-55550000", "138001380001", ""):
        with pytest.raises(BadPhone):
            await send_code(runtime, phone)
    assert sms_fake.requests == 0


async def test_without_sms_there_are_no_codes(sqlite_url: str, tmp_path: Path) -> None:
    async with sms_runtime(make_settings(sqlite_url, tmp_path, load_demo="off")) as rt:
        with pytest.raises(SmsNotConfigured):
            await send_code(rt, PHONE)
