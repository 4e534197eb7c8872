"""Tencent Cloud SMS through its SDK, tencentcloud-sdk-python-sms (API 2021-01-11): SendSms with
SmsSdkAppId, SignName, TemplateId and TemplateParamSet, signed TC3-HMAC-SHA256 by the SDK.

TemplateParamSet is positional: the template's {1}, {2}, … take the params in the order given
(bot/sms/templates.py fixes that order). Errors come two ways: the whole request refused (an SDK
exception with a code: AuthFailure.*, FailedOperation.TemplateIncorrectOrUnapproved, RequestLimitExceeded)
or one number refused in SendStatusSet (LimitExceeded.PhoneNumber*: that number's throttling).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from adapters.base import adapter_logger
from bot.sms.endpoint import split_endpoint
from bot.sms.errors import SmsPermanent, SmsRetryable

log = adapter_logger(__name__)

THROTTLE_RETRY_S = 60.0


class TencentSms:
    name = "tencent"

    def __init__(self, secret_id: str, secret_key: str, sdk_app_id: str, sign_name: str, *, region: str,
                 endpoint: str = "", timeout_s: int = 10) -> None:
        # Imported here: only a deployment with SMS_PROVIDER=tencent pays for the SDK.
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111.sms_client import SmsClient

        split = split_endpoint(endpoint)
        http = HttpProfile(reqTimeout=timeout_s)
        if split is not None:
            http.protocol, http.endpoint = split
            http.scheme = http.protocol
        profile = ClientProfile(httpProfile=http)  # signMethod TC3-HMAC-SHA256 is the default
        self._client = SmsClient(credential.Credential(secret_id, secret_key), region, profile)
        self._sdk_app_id = sdk_app_id
        self._sign_name = sign_name

    async def send(self, phone: str, template_code: str, params: Mapping[str, str]) -> str:
        return await asyncio.to_thread(self._send, phone, template_code, [str(v) for v in params.values()])

    def _send(self, phone: str, template_id: str, values: list[str]) -> str:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
        from tencentcloud.sms.v20210111.models import SendSmsRequest

        request = SendSmsRequest()
        request.PhoneNumberSet = [f"+86{phone}"]
        request.SmsSdkAppId = self._sdk_app_id
        request.SignName = self._sign_name
        request.TemplateId = template_id
        request.TemplateParamSet = values
        try:
            response = self._client.SendSms(request)
        except TencentCloudSDKException as error:
            code = str(error.code or "")
            log.warning("tencent SendSms refused: %s %s", code, error.message)
            if _retryable(code):
                raise SmsRetryable(f"tencent {code}: {error.message}", retry_after_s=THROTTLE_RETRY_S,
                                   provider=self.name, code=code) from error
            raise SmsPermanent(f"tencent {code}: {error.message}", provider=self.name, code=code) from error
        statuses = response.SendStatusSet or []
        if not statuses:
            raise SmsRetryable("tencent answered without a send status", provider=self.name)
        status = statuses[0]
        code = str(status.Code or "")
        if code == "Ok":
            return str(status.SerialNo or response.RequestId or "")
        log.warning("tencent SendSms refused the number: %s %s", code, status.Message)
        if _retryable(code):
            raise SmsRetryable(f"tencent {code}: {status.Message}", retry_after_s=THROTTLE_RETRY_S,
                               provider=self.name, code=code)
        raise SmsPermanent(f"tencent {code}: {status.Message}", provider=self.name, code=code)


def _retryable(code: str) -> bool:
    """Throttling (ours or the platform's), its internal errors and the network may pass later."""
    return code.startswith(("LimitExceeded", "RequestLimitExceeded", "InternalError", "ClientNetworkError",
                            "ServerNetworkError", "ServiceUnavailable", "ResourceUnavailable"))
