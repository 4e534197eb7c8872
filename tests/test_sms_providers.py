"""Both SMS providers through their real SDKs against the sms_fake endpoint, which checks each request's
signature with the provider's documented algorithm (ACS3-HMAC-SHA256, TC3-HMAC-SHA256) and answers
like the real API: success, throttling, an unapproved template, a wrong key."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
import pytest

from bot.sms.aliyun import AliyunSms
from bot.sms.errors import SmsPermanent, SmsRetryable
from bot.sms.port import SmsProvider
from bot.sms.tencent import TencentSms
from tests.fakes.sms_provider import FakeSmsProvider, acs3_signature, tc3_signature


def aliyun(sms_fake: FakeSmsProvider, secret: str = "aliyun-test-secret") -> AliyunSms:
    return AliyunSms("LTAI-test-id", secret, sms_fake.sign_name, endpoint=sms_fake.base_url)


def tencent(sms_fake: FakeSmsProvider, secret: str = "tencent-test-secret") -> TencentSms:
    return TencentSms("AKID-test-id", secret, sms_fake.sdk_app_id, sms_fake.sign_name, region="ap-guangzhou",
                      endpoint=sms_fake.base_url)


async def test_aliyun_sends_a_signed_send_sms(sms_fake: FakeSmsProvider) -> None:
    message_id = await aliyun(sms_fake).send("13800138000", "SMS_100002",
                                         {"number": "GD-20261206-0001", "status": "待派单", "link": "http://x/t/a b+c"})
    [sent] = sms_fake.sent
    assert (sent.provider, sent.phone, sent.template, sent.sign_name) == ("aliyun", "13800138000", "SMS_100002",
                                                                          "测试汽修")
    assert sent.params == {"number": "GD-20261206-0001", "status": "待派单", "link": "http://x/t/a b+c"}
    assert message_id == sent.message_id and sms_fake.bad_signatures == 0


async def test_tencent_sends_a_signed_send_sms_with_positional_params(sms_fake: FakeSmsProvider) -> None:
    message_id = await tencent(sms_fake).send("13800138000", "100002",
                                          {"number": "GD-1", "status": "处理中", "link": "http://x/t/abc"})
    [sent] = sms_fake.sent
    assert (sent.provider, sent.phone, sent.template) == ("tencent", "+8613800138000", "100002")
    assert sent.params == ["GD-1", "处理中", "http://x/t/abc"]  # TemplateParamSet: the template's {1} {2} {3}
    assert message_id == sent.message_id and sms_fake.bad_signatures == 0


@pytest.mark.parametrize("make", [aliyun, tencent])
async def test_a_wrong_secret_fails_the_signature_check_for_good(sms_fake: FakeSmsProvider, make: object) -> None:
    provider: SmsProvider = make(sms_fake, "not-the-secret")  # type: ignore[operator]
    with pytest.raises(SmsPermanent) as raised:
        await provider.send("13800138000", "SMS_100001" if provider.name == "aliyun" else "100001", {"code": "1"})
    assert "Signature" in raised.value.reason and sms_fake.bad_signatures == 1 and sms_fake.sent == []


@pytest.mark.parametrize("make", [aliyun, tencent])
async def test_throttling_is_retryable(sms_fake: FakeSmsProvider, make: object) -> None:
    provider: SmsProvider = make(sms_fake)  # type: ignore[operator]
    template = "SMS_100001" if provider.name == "aliyun" else "100001"
    sms_fake.per_minute = 1
    await provider.send("13800138000", template, {"code": "123456"})
    with pytest.raises(SmsRetryable) as raised:
        await provider.send("13800138000", template, {"code": "654321"})
    assert raised.value.retry_after_s and raised.value.data["code"] in {"isv.BUSINESS_LIMIT_CONTROL",
                                                                        "LimitExceeded.PhoneNumberThirtySecondLimit"}
    assert len(sms_fake.sent) == 1


@pytest.mark.parametrize("make", [aliyun, tencent])
async def test_an_unapproved_template_is_permanent(sms_fake: FakeSmsProvider, make: object) -> None:
    provider: SmsProvider = make(sms_fake)  # type: ignore[operator]
    with pytest.raises(SmsPermanent) as raised:
        await provider.send("13800138000", "SMS_404", {"code": "1"})
    assert raised.value.data["code"] in {"isv.SMS_TEMPLATE_ILLEGAL", "FailedOperation.TemplateIncorrectOrUnapproved"}


@pytest.mark.parametrize("make", [aliyun, tencent])
async def test_an_unreachable_endpoint_is_retryable(make: object) -> None:
    dead = FakeSmsProvider()
    dead.base_url = "http://127.0.0.1:9"  # discard port: nothing listens
    provider: SmsProvider = make(dead)  # type: ignore[operator]
    with pytest.raises(SmsRetryable):
        await provider.send("13800138000", "SMS_100001", {"code": "1"})


async def test_the_fake_checks_what_was_signed(sms_fake: FakeSmsProvider) -> None:
    """A request signed with the documented ACS3/TC3 algorithms (not the SDKs) passes; the same request
    with one parameter changed after signing does not: the sms_fake verifies, it does not just parse."""
    host = sms_fake.base_url.removeprefix("http://")
    query = "PhoneNumbers=13800138000&SignName=" + quote(sms_fake.sign_name) + "&TemplateCode=SMS_100001" \
            "&TemplateParam=" + quote('{"code":"123456"}')
    headers = {"host": host, "x-acs-action": "SendSms", "x-acs-version": "2017-05-25",
               "x-acs-date": "2026-12-06T10:00:00Z", "x-acs-signature-nonce": "n1",
               "x-acs-content-sha256": hashlib.sha256(b"").hexdigest()}
    names = sorted(headers)
    signature = acs3_signature("POST", "/", query, headers, names, b"", "aliyun-test-secret")
    headers["Authorization"] = (f"ACS3-HMAC-SHA256 Credential=LTAI-test-id,SignedHeaders={';'.join(names)},"
                                f"Signature={signature}")
    body = json.dumps({"PhoneNumberSet": ["+8613800138000"], "SmsSdkAppId": sms_fake.sdk_app_id,
                       "SignName": sms_fake.sign_name, "TemplateId": "100001", "TemplateParamSet": ["123456"]})
    now = int(time.time())
    date = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    tc_headers = {"Content-Type": "application/json", "Host": host, "X-TC-Action": "SendSms",
                  "X-TC-Version": "2021-01-11", "X-TC-Timestamp": str(now)}
    tc_signature = tc3_signature("POST", "/", "", {"content-type": "application/json", "host": host},
                                 ["content-type", "host"], body.encode(), "tencent-test-secret", now, date, "sms")
    tc_headers["Authorization"] = (f"TC3-HMAC-SHA256 Credential=AKID-test-id/{date}/sms/tc3_request, "
                                   f"SignedHeaders=content-type;host, Signature={tc_signature}")
    async with aiohttp.ClientSession() as http:
        ok = await http.post(f"{sms_fake.base_url}/?{query}", headers=headers, data=b"")
        assert (await ok.json())["Code"] == "OK"
        forged = await http.post(f"{sms_fake.base_url}/?{query.replace('123456', '000000')}", headers=headers, data=b"")
        assert forged.status == 400 and (await forged.json())["Code"] == "SignatureDoesNotMatch"
        tc_ok = await http.post(sms_fake.base_url + "/", headers=tc_headers, data=body.encode())
        assert (await tc_ok.json())["Response"]["SendStatusSet"][0]["Code"] == "Ok"
        tc_forged = await http.post(sms_fake.base_url + "/", headers=tc_headers,
                                    data=body.replace("123456", "000000").encode())
        assert (await tc_forged.json())["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert sms_fake.bad_signatures == 2 and len(sms_fake.sent) == 2
