"""A fake SMS provider endpoint speaking both real wire protocols, on loopback (SMS_ENDPOINT points the
SDKs here). Each request's signature is CHECKED with the provider's documented algorithm, written out
here independently of the SDKs that made it:

* Alibaba Cloud (Dysms SendSms, RPC style, POST with the parameters in the query string), signature
  ACS3-HMAC-SHA256: canonical request = method, path, the sorted percent-encoded query, the signed
  headers (lower-cased "name:value" lines), their names joined by ";", the hex SHA-256 of the body
  (also sent as x-acs-content-sha256); string to sign = "ACS3-HMAC-SHA256\\n" + hex SHA-256 of it;
  signature = hex HMAC-SHA256(AccessKey secret). Business errors answer HTTP 200 with a Code
  (isv.BUSINESS_LIMIT_CONTROL, isv.SMS_TEMPLATE_ILLEGAL, isv.MOBILE_NUMBER_ILLEGAL); a bad
  signature answers 400 SignatureDoesNotMatch, an unknown key 404 InvalidAccessKeyId.NotFound.
* Tencent Cloud (SMS SendSms 2021-01-11, JSON body), signature TC3-HMAC-SHA256: canonical request =
  "POST\\n/\\n\\ncontent-type:…\\nhost:…\\n\\ncontent-type;host\\n" + hex SHA-256(body); string to sign =
  algorithm, timestamp, "<date>/sms/tc3_request", hex SHA-256(canonical request); key = HMAC chain
  "TC3"+SecretKey → date → "sms" → "tc3_request". Errors answer HTTP 200 with Response.Error
  (AuthFailure.SignatureFailure, AuthFailure.SignatureExpire, FailedOperation.TemplateIncorrectOrUnapproved)
  or, for one number, a SendStatusSet code (LimitExceeded.PhoneNumberThirtySecondLimit).

Throttling is real: more than `per_minute` messages to one number within 60 s are refused, as both
providers do; `throttle_next` refuses the next N sends to force the case.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from aiohttp import web

SIGNATURE_WINDOW_S = 300


@dataclass(slots=True)
class SentSms:
    provider: str
    phone: str  # as the provider got it (Tencent: +86…)
    sign_name: str
    template: str
    params: Any  # Aliyun: the TemplateParam object; Tencent: the TemplateParamSet list
    message_id: str
    at: float


@dataclass
class FakeSmsProvider:
    aliyun_keys: dict[str, str] = field(default_factory=lambda: {"LTAI-test-id": "aliyun-test-secret"})
    tencent_keys: dict[str, str] = field(default_factory=lambda: {"AKID-test-id": "tencent-test-secret"})
    sdk_app_id: str = "1400000001"
    sign_name: str = "测试汽修"
    templates: set[str] = field(default_factory=lambda: {"SMS_100001", "SMS_100002", "100001", "100002"})
    per_minute: int = 1_000  # the provider's own per-number throttle
    throttle_next: int = 0
    sent: list[SentSms] = field(default_factory=list)
    bad_signatures: int = 0
    requests: int = 0
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def texts_to(self, phone: str) -> list[SentSms]:
        return [s for s in self.sent if s.phone.removeprefix("+86") == phone]

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if request.headers.get("X-TC-Action"):
            return self._tencent(request, body)
        if request.headers.get("x-acs-action"):
            return self._aliyun(request, body)
        return web.json_response({"error": "neither an Aliyun nor a Tencent request"}, status=400)

    def _throttled(self, phone: str) -> bool:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return True
        recent = [s for s in self.sent if s.phone == phone and time.time() - s.at < 60]
        return len(recent) >= self.per_minute

    # --- Alibaba Cloud ---
    def _aliyun(self, request: web.Request, body: bytes) -> web.Response:
        request_id = str(uuid.uuid4()).upper()

        def error(status: int, code: str, message: str) -> web.Response:
            return web.json_response({"RequestId": request_id, "Code": code, "Message": message,
                                      "HostId": "dysmsapi.aliyuncs.com"}, status=status)

        auth = request.headers.get("Authorization", "")
        parsed = _acs3_fields(auth)
        if parsed is None:
            self.bad_signatures += 1
            return error(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        access_key_id, signed_headers, signature = parsed
        secret = self.aliyun_keys.get(access_key_id)
        if secret is None:
            return error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if hashlib.sha256(body).hexdigest() != request.headers.get("x-acs-content-sha256"):
            self.bad_signatures += 1
            return error(400, "SignatureDoesNotMatch", "The payload hash does not match.")
        if not hmac.compare_digest(acs3_signature(request.method, request.path, request.query_string,
                                                  request.headers, signed_headers, body, secret), signature):
            self.bad_signatures += 1
            return error(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
        if (request.headers.get("x-acs-action"), request.headers.get("x-acs-version")) != ("SendSms", "2017-05-25"):
            return error(400, "InvalidAction.NotFound", "Specified api is not found, please check your url "
                                                        "and method.")
        query = dict(parse_qsl(request.query_string, keep_blank_values=True))
        phone, template = query.get("PhoneNumbers", ""), query.get("TemplateCode", "")
        if query.get("SignName") != self.sign_name:
            return web.json_response({"RequestId": request_id, "Code": "isv.SMS_SIGNATURE_ILLEGAL",
                                      "Message": "该账号下找不到对应签名"})
        if template not in self.templates:
            return web.json_response({"RequestId": request_id, "Code": "isv.SMS_TEMPLATE_ILLEGAL",
                                      "Message": "该账号下找不到对应模板"})
        if not (len(phone) == 11 and phone.isdigit() and phone.startswith("1")):
            return web.json_response({"RequestId": request_id, "Code": "isv.MOBILE_NUMBER_ILLEGAL",
                                      "Message": "非法手机号"})
        try:
            params = json.loads(query.get("TemplateParam") or "{}")
        except ValueError:
            return web.json_response({"RequestId": request_id, "Code": "isv.INVALID_JSON_PARAM",
                                      "Message": "JSON参数不合法，只接受字符串值"})
        if self._throttled(phone):
            return web.json_response({"RequestId": request_id, "Code": "isv.BUSINESS_LIMIT_CONTROL",
                                      "Message": "触发分钟级流控Permits:1"})
        biz_id = f"{int(time.time() * 1000)}^{uuid.uuid4().int % 10 ** 10}"
        self.sent.append(SentSms("aliyun", phone, query["SignName"], template, params, biz_id, time.time()))
        return web.json_response({"RequestId": request_id, "Code": "OK", "Message": "OK", "BizId": biz_id})

    # --- Tencent Cloud ---
    def _tencent(self, request: web.Request, body: bytes) -> web.Response:
        request_id = str(uuid.uuid4())

        def error(code: str, message: str) -> web.Response:
            return _tencent_json({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id}})

        auth = request.headers.get("Authorization", "")
        parsed = _tc3_fields(auth)
        if parsed is None:
            self.bad_signatures += 1
            return error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        secret_id, date, service, signed_headers, signature = parsed
        secret = self.tencent_keys.get(secret_id)
        if secret is None:
            return error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        timestamp = int(request.headers.get("X-TC-Timestamp", "0") or 0)
        if abs(time.time() - timestamp) > SIGNATURE_WINDOW_S:
            return error("AuthFailure.SignatureExpire", "Signature expired.")
        if datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d") != date or service != "sms":
            self.bad_signatures += 1
            return error("AuthFailure.SignatureFailure", "The credential scope does not match.")
        expected = tc3_signature(request.method, request.path, request.query_string, request.headers,
                                 signed_headers, body, secret, timestamp, date, service)
        if not hmac.compare_digest(expected, signature):
            self.bad_signatures += 1
            return error("AuthFailure.SignatureFailure", "The provided credentials could not be validated. "
                                                         "Please check your signature is correct.")
        if (request.headers.get("X-TC-Action"), request.headers.get("X-TC-Version")) != ("SendSms", "2021-01-11"):
            return error("InvalidAction", "The action is not supported.")
        try:
            payload = json.loads(body)
        except ValueError:
            return error("InvalidParameter", "The body is not JSON.")
        if payload.get("SmsSdkAppId") != self.sdk_app_id:
            return error("FailedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId verification failed.")
        if payload.get("SignName") != self.sign_name:
            return error("FailedOperation.SignatureIncorrectOrUnapproved", "签名未审批或格式错误。")
        template = str(payload.get("TemplateId", ""))
        if template not in self.templates:
            return error("FailedOperation.TemplateIncorrectOrUnapproved", "模板未审批或内容不匹配。")
        statuses = []
        for phone in payload.get("PhoneNumberSet") or []:
            digits = phone.removeprefix("+86")
            if not (len(digits) == 11 and digits.isdigit() and digits.startswith("1")):
                statuses.append(_tencent_status(phone, "InvalidParameterValue.IncorrectPhoneNumber", "手机号格式错误"))
            elif self._throttled(phone):
                statuses.append(_tencent_status(phone, "LimitExceeded.PhoneNumberThirtySecondLimit",
                                                "单个手机号30秒内下发短信条数超过设定的上限"))
            else:
                serial = f"{uuid.uuid4().int % 10 ** 10}:{uuid.uuid4().hex[:24]}"
                self.sent.append(SentSms("tencent", phone, payload["SignName"], template,
                                         list(payload.get("TemplateParamSet") or []), serial, time.time()))
                statuses.append({**_tencent_status(phone, "Ok", "send success"), "SerialNo": serial, "Fee": 1})
        return _tencent_json({"Response": {"SendStatusSet": statuses, "RequestId": request_id}})


def _tencent_json(data: dict[str, Any]) -> web.Response:
    # Exactly "application/json", as the real API answers: the SDK looks for errors only then.
    return web.Response(body=json.dumps(data, ensure_ascii=False).encode("utf-8"),
                        headers={"Content-Type": "application/json"})


def _tencent_status(phone: str, code: str, message: str) -> dict[str, Any]:
    return {"SerialNo": "", "PhoneNumber": phone, "Fee": 0, "SessionContext": "", "Code": code, "Message": message,
            "IsoCode": "CN"}


def _acs3_fields(header: str) -> tuple[str, list[str], str] | None:
    """(AccessKey id, signed header names, signature) of "ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…"."""
    algorithm, _, rest = header.partition(" ")
    if algorithm != "ACS3-HMAC-SHA256":
        return None
    try:
        fields = dict(part.strip().split("=", 1) for part in rest.split(","))
        return fields["Credential"], fields["SignedHeaders"].split(";"), fields["Signature"]
    except (KeyError, ValueError):
        return None


def _tc3_fields(header: str) -> tuple[str, str, str, list[str], str] | None:
    """(SecretId, date, service, signed header names, signature) of a TC3-HMAC-SHA256 Authorization."""
    algorithm, _, rest = header.partition(" ")
    if algorithm != "TC3-HMAC-SHA256":
        return None
    try:
        fields = dict(part.strip().split("=", 1) for part in rest.split(","))
        secret_id, date, service, terminator = fields["Credential"].split("/")
        if terminator != "tc3_request":
            return None
        return secret_id, date, service, fields["SignedHeaders"].split(";"), fields["Signature"]
    except (KeyError, ValueError):
        return None


def _canonical_headers(headers: Any, names: list[str]) -> str:
    return "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in names)


def _canonical_query(query_string: str) -> str:
    pairs = sorted(parse_qsl(query_string, keep_blank_values=True))
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)


def acs3_signature(method: str, path: str, query_string: str, headers: Any, signed_headers: list[str], body: bytes,
                   secret: str) -> str:
    canonical = "\n".join([method, path or "/", _canonical_query(query_string),
                           _canonical_headers(headers, signed_headers), ";".join(signed_headers),
                           hashlib.sha256(body).hexdigest()])
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def tc3_signature(method: str, path: str, query_string: str, headers: Any, signed_headers: list[str], body: bytes,
                  secret: str, timestamp: int, date: str, service: str) -> str:
    canonical = "\n".join([method, path or "/", query_string, _canonical_headers(headers, signed_headers),
                           ";".join(signed_headers), hashlib.sha256(body).hexdigest()])
    scope = f"{date}/{service}/tc3_request"
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"

    def mac(key: bytes, message: str) -> bytes:
        return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()

    signing_key = mac(mac(mac(("TC3" + secret).encode("utf-8"), date), service), "tc3_request")
    return hmac.new(signing_key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
