"""The one settings object. Read from the environment or a `.env` file.

Every field here is listed in `.env.example` and the README's configuration table.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.settings_parts.console import ConsoleSettings
from bot.settings_parts.customer_pages import CustomerPageSettings
from bot.settings_parts.links import LinkSettings
from bot.settings_parts.report_page import ReportPageSettings
from bot.settings_parts.sms import SmsSettings
from bot.settings_parts.wecom_kf import WecomKfSettings


class Settings(LinkSettings, WecomKfSettings, SmsSettings, CustomerPageSettings, ReportPageSettings,
               ConsoleSettings, BaseSettings):
    """The groups of issues 21/22 live in bot/settings_parts/ (one module per capability)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- storage and timers ---
    data_dir: Path = Field(default=Path("data"), description="Folder for the SQLite file and photos.")
    database_url: str | None = Field(
        default=None, description="sqlite:///path or postgresql://user@host/db; default: SQLite under DATA_DIR."
    )
    redis_url: str | None = Field(default=None, description="Unset: in-process timers. Set: arq/Redis.")
    timezone: str = Field(default="Asia/Shanghai", description="The tenant's zone for numbers, hours, SLAs.")
    audit_key: SecretStr | None = Field(
        default=None, description="HMAC key of the audit chain (≥ 32 characters); unset: DATA_DIR/audit.key, "
                                  "generated on first start. Several hosts must share one.")

    # --- business calendar and SLA (see core/sla/matrix.py, core/sla/calendar.py) ---
    business_hours: str = Field(default="08:00-18:00", description="Working hours in TIMEZONE.")
    lunch_break: str = Field(default="", description="Optional break inside working hours, e.g. 12:00-13:00.")
    sla_reminder_lead_minutes: float = Field(default=15.0, description="Strong reminder this long before a deadline.")
    sla_second_level_minutes: float = Field(default=60.0, description="Escalate to admins if nobody acknowledged.")
    sla_root_cause_remind_minutes: float = Field(default=240.0, description="Nag interval for a root-cause task.")
    sla_digest_seconds: float = Field(default=60.0, description="Reminders to one person merge within this window.")
    sla_pause_states: str = Field(default="waiting_parts,waiting_customer_plan",
                                  description="States in which the resolution clock stops.")
    sla_daily_check_hour: int = Field(default=9, description="Local hour of the daily holiday-schedule check.")
    timer_sweep_seconds: float = Field(default=5.0, description="arq worker: period of the overdue-timer sweep.")
    process_inbox: Literal["web", "worker"] = Field(
        default="web", description="web: the process that accepted a message handles it; worker: web processes "
                                   "only accept and hand it to `ticketbot worker` through arq (needs REDIS_URL).")

    # --- intake (see docs/user-guide.md, Intake: why these defaults) ---
    report_limit_per_sender: int = Field(
        default=5, description="New tickets one customer may open per window; more are answered and kept, "
                               "not ticketed. 0: no limit.")
    report_limit_window_minutes: float = Field(default=10.0, description="The window of REPORT_LIMIT_PER_SENDER.")
    follow_up_window_hours: float = Field(
        default=24.0, description="A report repeating an open ticket this young (same asset or category) is a "
                                  "follow-up on it; 0: never.")

    # --- intake prefill and personal data (issue 20, docs/masterdata.md) ---
    location_window_minutes: float = Field(
        default=30.0, description="A location (or 设备编号) a customer sends this shortly before reporting is "
                                  "that report's; 0: only a location sent with or after the report counts.")
    customer_data_retention_days: int = Field(
        default=1095, description="Closed tickets keep the customer's contact data (name, masked phone, address, "
                                  "site) this many days, then it is purged; handled inbox and delivered outbox "
                                  "rows are deleted at this age (never before 7 days); 0: kept forever.")

    # --- HTTP ---
    api_token: str | None = Field(default=None, description="When set, /api/ requires Bearer auth.")
    playground: str | None = Field(default=None, description="on/off; default on only on a loopback bind "
                                                             "(on elsewhere: served with a loud warning).")
    max_body_bytes: int = Field(default=1_048_576, description="Largest accepted request body.")
    load_demo: str = Field(default="auto", description="auto: demo directory into an empty database on a "
                                                       "loopback bind only; on: any bind; off: never.")

    # --- API v1 and metrics (issue 23: bot/api_v1/, bot/metrics.py, docs/api.md) ---
    api_idempotency_hours: float = Field(default=24.0, gt=0, description="How long an Idempotency-Key and its "
                                                                          "first answer are kept.")
    api_rate_limit_per_minute: int = Field(default=600, ge=1, description="Requests per minute per API client "
                                                                          "(then 429 with Retry-After).")
    api_max_body_bytes: int = Field(default=65_536, ge=1024, description="Largest /api/v1/ request body (413).")
    metrics_token: str | None = Field(default=None, description="Bearer token for GET /metrics; unset: loopback "
                                                                "clients only.")

    # --- outbound webhooks (issue 23: bot/jobs/webhooks.py, docs/webhooks.md) ---
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Per-delivery timeout of a webhook POST; a "
                                                                     "receiver slower than this is a failed attempt.")
    webhook_concurrency: int = Field(default=8, ge=1, description="Webhook deliveries in flight per subscription "
                                                                 "(a hanging receiver holds only these).")
    webhook_allow_private: bool = Field(default=False, description="on: webhook URLs may point at loopback/private/"
                                                                   "link-local addresses (SSRF guard off; admins "
                                                                   "only, e.g. a receiver on the same host).")

    # --- hub: attachments from API clients (issue 23: bot/api_v1/hub_routes.py, docs/api.md#attachments) ---
    api_attachment_max_bytes: int = Field(default=10_485_760, ge=1024, description="Largest attachment an API "
                                                                                   "client may upload (413).")

    # --- WeCom (企业微信) ---
    wecom_corp_id: str | None = None
    wecom_agent_id: str | None = None
    wecom_secret: str | None = None
    wecom_token: str | None = None
    wecom_encoding_aes_key: str | None = None
    wecom_api_base: str = "https://qyapi.weixin.qq.com/cgi-bin/"

    # --- Feishu (飞书) ---
    feishu_app_id: str | None = None
    feishu_app_secret: str | None = None
    feishu_encrypt_key: str | None = None
    feishu_verification_token: str | None = None
    feishu_domain: str = "https://open.feishu.cn"
    feishu_long_connection: bool = False

    # --- DingTalk (钉钉) ---
    dingtalk_client_id: str | None = None
    dingtalk_client_secret: str | None = None
    dingtalk_robot_code: str | None = None
    dingtalk_card_template_id: str | None = None

    # --- directory sync (issue 20: core/masterdata/directory.py, docs/masterdata.md#directory-sync) ---
    dingtalk_oapi_base: str = Field(default="https://oapi.dingtalk.com",
                                    description="DingTalk's oapi host (the topapi contact calls of the sync).")
    directory_sync_at: str = Field(default="", description="Daily directory sync at this local time (HH:MM, "
                                                          "e.g. 03:00) from every configured platform; empty: off.")
    directory_role_map: str = Field(default="", description="Role of people the sync creates: keyword=role rules "
                                                           "matched on job title and department names, e.g. "
                                                           "维修=technician,客服=front_desk.")
    directory_default_role: str = Field(default="customer", description="Role of a new synced person no rule "
                                                                        "matches (never technician by accident).")
    directory_max_deactivate_share: float = Field(
        default=0.5, description="A sync that would deactivate more than this share of a platform's linked "
                                 "people is refused (a narrowed visibility scope); --force applies it.")

    @property
    def wecom_enabled(self) -> bool:
        return all(
            [self.wecom_corp_id, self.wecom_agent_id, self.wecom_secret, self.wecom_token, self.wecom_encoding_aes_key]
        )

    @property
    def wecom_kf_enabled(self) -> bool:
        """微信客服: its own secret and account(s), on the WeCom app's callback (corp id, token, AES key)."""
        return bool(self.wecom_kf_secret and self.wecom_kf_open_kfid.strip() and self.wecom_corp_id
                    and self.wecom_token and self.wecom_encoding_aes_key)

    def public_base(self, host: str, port: int) -> str:
        """PUBLIC_BASE_URL without its trailing slash, or http://<host>:<port> of the bind."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"http://{host}:{port}"

    @property
    def feishu_enabled(self) -> bool:
        return bool(self.feishu_app_id and self.feishu_app_secret)

    @property
    def dingtalk_enabled(self) -> bool:
        return bool(self.dingtalk_client_id and self.dingtalk_client_secret)

    def delivery_channels(self) -> frozenset[str]:
        """Where notifications can be delivered: the playground plus every configured platform."""
        enabled = {"wecom": self.wecom_enabled, "feishu": self.feishu_enabled, "dingtalk": self.dingtalk_enabled,
                   # issue 21: WeChat users through 微信客服, and SMS for customers without a chat identity
                   "wecom_kf": self.wecom_kf_enabled, "sms": self.sms_provider is not None}
        return frozenset({"local", *(name for name, on in enabled.items() if on)})

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ticketbot.db').resolve()}"

    def playground_enabled(self, host: str) -> bool:
        if self.playground is not None:
            return self.playground.strip().lower() in {"on", "1", "true", "yes"}
        return is_loopback(host)


def is_loopback(host: str) -> bool:
    if host in {"localhost", ""}:
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
