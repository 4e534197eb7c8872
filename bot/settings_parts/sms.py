"""SMS to customers without a chat identity, the 微信客服 budget fallback, phone codes (issue 21)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class SmsSettings(BaseSettings):
    sms_provider: Literal["aliyun", "tencent"] | None = Field(
        default=None, description="aliyun (Alibaba Cloud Dysms) or tencent (Tencent Cloud SMS); unset: no SMS.")
    sms_sign_name: str = Field(default="", description="The approved SMS signature (签名), e.g. 某某汽修.")
    sms_template_code_verify: str = Field(default="", description="Template of the phone confirmation code "
                                                                  "(one variable: code).")
    sms_template_code_notice: str = Field(default="", description="Template of a ticket notice (variables: "
                                                                  "number, status, link).")
    sms_endpoint: str = Field(default="", description="Override of the provider's API endpoint (tests, private "
                                                      "deployments); empty: the SDK's default.")
    sms_limit_per_phone_hour: int = Field(default=5, ge=1, description="SMS to one phone number per hour at most.")
    aliyun_access_key_id: str | None = Field(default=None, description="Alibaba Cloud AccessKey id (SMS).")
    aliyun_access_key_secret: SecretStr | None = Field(default=None, description="Alibaba Cloud AccessKey secret.")
    tencent_secret_id: str | None = Field(default=None, description="Tencent Cloud SecretId (SMS).")
    tencent_secret_key: SecretStr | None = Field(default=None, description="Tencent Cloud SecretKey.")
    tencent_sms_sdk_app_id: str = Field(default="", description="Tencent Cloud SMS SdkAppId.")
    tencent_sms_region: str = Field(default="ap-guangzhou", description="Tencent Cloud SMS region.")
