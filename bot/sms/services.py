"""The SMS pieces of one runtime, built on first use: the provider (SMS_PROVIDER's SDK), the store
(storage/sms_store.py) and the key that hashes codes. One per Runtime, without changing its class."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.audit_key import load_audit_key
from bot.sms.errors import SmsNotConfigured
from bot.sms.port import SmsProvider
from core.audit.chain import AuditKey
from storage.sms_store import SqlSmsStore

if TYPE_CHECKING:
    from bot.runtime import Runtime
    from bot.settings import Settings

LIMIT_WINDOW = timedelta(hours=1)


@dataclass(slots=True)
class SmsServices:
    provider: SmsProvider
    store: SqlSmsStore
    key: AuditKey
    settings: Settings

    @property
    def limit_per_hour(self) -> int:
        return self.settings.sms_limit_per_phone_hour


_BY_RUNTIME: weakref.WeakKeyDictionary[Runtime, SmsServices] = weakref.WeakKeyDictionary()


def sms_configured(settings: Settings) -> bool:
    return settings.sms_provider is not None


def provider_from_settings(settings: Settings) -> SmsProvider:
    """The provider SMS_PROVIDER names, with its keys; SmsNotConfigured when something is missing."""
    if settings.sms_provider == "aliyun":
        if not (settings.aliyun_access_key_id and settings.aliyun_access_key_secret and settings.sms_sign_name):
            raise SmsNotConfigured("SMS_PROVIDER=aliyun needs ALIYUN_ACCESS_KEY_ID, ALIYUN_ACCESS_KEY_SECRET "
                                   "and SMS_SIGN_NAME")
        from bot.sms.aliyun import AliyunSms

        return AliyunSms(settings.aliyun_access_key_id, settings.aliyun_access_key_secret.get_secret_value(),
                         settings.sms_sign_name, endpoint=settings.sms_endpoint)
    if settings.sms_provider == "tencent":
        if not (settings.tencent_secret_id and settings.tencent_secret_key and settings.tencent_sms_sdk_app_id
                and settings.sms_sign_name):
            raise SmsNotConfigured("SMS_PROVIDER=tencent needs TENCENT_SECRET_ID, TENCENT_SECRET_KEY, "
                                   "TENCENT_SMS_SDK_APP_ID and SMS_SIGN_NAME")
        from bot.sms.tencent import TencentSms

        return TencentSms(settings.tencent_secret_id, settings.tencent_secret_key.get_secret_value(),
                          settings.tencent_sms_sdk_app_id, settings.sms_sign_name,
                          region=settings.tencent_sms_region, endpoint=settings.sms_endpoint)
    raise SmsNotConfigured("SMS_PROVIDER is not set")


def sms_of(runtime: Runtime) -> SmsServices:
    """The runtime's SMS services; SmsNotConfigured when SMS_PROVIDER is unset or incomplete."""
    services = _BY_RUNTIME.get(runtime)
    if services is None:
        services = SmsServices(provider=provider_from_settings(runtime.settings),
                               store=SqlSmsStore(runtime.sessions), key=load_audit_key(runtime.settings),
                               settings=runtime.settings)
        _BY_RUNTIME[runtime] = services
    return services
