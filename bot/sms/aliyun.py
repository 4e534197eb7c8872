"""Alibaba Cloud SMS (Dysms) through its SDK, alibabacloud-dysmsapi20170525: SendSms with SignName,
TemplateCode and TemplateParam (JSON), signed ACS3-HMAC-SHA256 by the SDK.

Dysms answers business errors with HTTP 200 and a Code other than "OK": isv.BUSINESS_LIMIT_CONTROL
(its own per-number throttling) and isp.* (its side) may pass later; every other isv.* (template,
signature, number, parameters) never will. HTTP errors come as the SDK's exceptions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from adapters.base import adapter_logger
from bot.sms.endpoint import split_endpoint
from bot.sms.errors import SmsPermanent, SmsRetryable

log = adapter_logger(__name__)

RETRYABLE_CODES = {"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "Throttling.User", "Throttling",
                   "isp.SYSTEM_ERROR", "isp.RAM_PERMISSION_DENY", "ServiceUnavailable"}
THROTTLE_RETRY_S = 60.0


class AliyunSms:
    name = "aliyun"

    def __init__(self, access_key_id: str, access_key_secret: str, sign_name: str, *, endpoint: str = "",
                 timeout_ms: int = 10_000) -> None:
        # Imported here: only a deployment with SMS_PROVIDER=aliyun pays for the SDK.
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_tea_openapi.utils_models import Config

        config = Config(access_key_id=access_key_id, access_key_secret=access_key_secret,
                        read_timeout=timeout_ms, connect_timeout=timeout_ms)
        split = split_endpoint(endpoint)
        if split is None:
            config.endpoint = "dysmsapi.aliyuncs.com"
        else:
            config.protocol, config.endpoint = split
        self._client = Client(config)
        self._sign_name = sign_name

    async def send(self, phone: str, template_code: str, params: Mapping[str, str]) -> str:
        return await asyncio.to_thread(self._send, phone, template_code, dict(params))

    def _send(self, phone: str, template_code: str, params: dict[str, str]) -> str:
        from alibabacloud_dysmsapi20170525.models import SendSmsRequest
        from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException

        request = SendSmsRequest(phone_numbers=phone, sign_name=self._sign_name, template_code=template_code,
                                 template_param=json.dumps(params, ensure_ascii=False, separators=(",", ":")))
        try:
            response = self._client.send_sms(request)
        except ThrottlingException as error:
            raise SmsRetryable(f"aliyun throttled: {error.code}", retry_after_s=_seconds(error.retry_after),
                               provider=self.name, code=error.code) from error
        except ServerException as error:
            raise SmsRetryable(f"aliyun {error.status_code}: {error.code}", provider=self.name,
                               code=error.code) from error
        except ClientException as error:  # 4xx: signature, key, parameters
            raise SmsPermanent(f"aliyun {error.status_code}: {error.code} {error.message}", provider=self.name,
                               code=error.code) from error
        except Exception as error:  # the SDK's transport errors: unreachable, timeout
            raise SmsRetryable(f"aliyun unreachable: {type(error).__name__}: {error}", provider=self.name) from error
        body: Any = response.body
        code = str(getattr(body, "code", "") or "")
        if code == "OK":
            return str(body.biz_id or body.request_id or "")
        message = str(getattr(body, "message", "") or "")
        log.warning("aliyun SendSms refused: %s %s", code, message)
        if code in RETRYABLE_CODES or code.startswith("isp."):
            raise SmsRetryable(f"aliyun {code}: {message}", retry_after_s=THROTTLE_RETRY_S, provider=self.name,
                               code=code)
        raise SmsPermanent(f"aliyun {code}: {message}", provider=self.name, code=code)


def _seconds(value: Any) -> float | None:
    try:
        return float(value) / 1000 if value else None  # the SDK's retry_after is in milliseconds
    except (TypeError, ValueError):
        return None
