"""Directory sync from the composition root: the platform clients, the fetch-then-apply run shared by
`ticketbot directory sync` and the daily job, and the daily job itself.

Each configured platform (WeCom, Feishu, DingTalk with their credentials set) is fetched completely
first (adapters/<platform>/directory.py); only then is its snapshot applied, in one unit of work
(core/masterdata/directory.py). A platform whose fetch fails is reported and changes nothing; the
others still sync.

The daily run rides on the durable timers: `install_directory_job` arms the `directory.sync` timer
for DIRECTORY_SYNC_AT (local time; empty: none) and installs this process's runner. The timer fires
once (the embedded timer loop, or `ticketbot worker` with REDIS_URL), re-arms itself for the next
day and, after its commit, calls the runner, which starts the sync in the background and returns, so
the timer loop never waits for the platforms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from bot.settings import Settings
from core.errors import TicketbotError
from core.masterdata.directory import (
    PLATFORM_LABELS,
    PLATFORMS,
    ArmDirectorySync,
    DirectoryFetchFailed,
    DirectorySnapshot,
    RoleMapping,
    SyncDirectory,
    TellDirectorySync,
    install_directory_runner,
    parse_sync_at,
)
from core.ports import TokenCache
from core.service import SYSTEM_ACTOR, TicketService

log = logging.getLogger(__name__)


class DirectoryClient(Protocol):
    platform: str

    async def fetch(self) -> DirectorySnapshot: ...


class DirectorySettingsError(ValueError):
    """DIRECTORY_* settings that can never work: raised at start-up and by the CLI, not at 03:00."""


def configured_platforms(settings: Settings) -> list[str]:
    enabled = {"wecom": settings.wecom_enabled, "feishu": settings.feishu_enabled,
               "dingtalk": settings.dingtalk_enabled}
    return [p for p in PLATFORMS if enabled[p]]


def role_mapping(settings: Settings) -> RoleMapping:
    try:
        return RoleMapping.parse(settings.directory_role_map, settings.directory_default_role)
    except TicketbotError as error:
        raise DirectorySettingsError(f"DIRECTORY_ROLE_MAP / DIRECTORY_DEFAULT_ROLE：{error.user_message}") from error


def check_settings(settings: Settings) -> None:
    role_mapping(settings)
    try:
        parse_sync_at(settings.directory_sync_at)
    except TicketbotError as error:
        raise DirectorySettingsError(error.user_message) from error
    if not 0 < settings.directory_max_deactivate_share <= 1:
        raise DirectorySettingsError("DIRECTORY_MAX_DEACTIVATE_SHARE 应在 0 到 1 之间，例如 0.5")


class _Closable(Protocol):
    async def close(self) -> None: ...


def build_client(platform: str, settings: Settings, tokens: TokenCache) -> tuple[DirectoryClient, _Closable]:
    """The platform's directory client on its sender's settings and token (cache key shared with the sender).
    Imported here: a service without that platform never loads its adapter."""
    if platform == "wecom":
        from adapters.wecom.api import WeComApi
        from adapters.wecom.config import WeComConfig
        from adapters.wecom.directory import WeComDirectory

        api = WeComApi(WeComConfig(
            corp_id=settings.wecom_corp_id or "", agent_id=settings.wecom_agent_id or "",
            secret=settings.wecom_secret or "", token=settings.wecom_token or "",
            encoding_aes_key=settings.wecom_encoding_aes_key or "", api_base=settings.wecom_api_base), tokens)
        return WeComDirectory(api), api
    if platform == "feishu":
        from adapters.feishu.api import FeishuApi
        from adapters.feishu.config import FeishuConfig
        from adapters.feishu.directory import FeishuDirectory

        feishu = FeishuApi(FeishuConfig(app_id=settings.feishu_app_id or "",
                                        app_secret=settings.feishu_app_secret or "", domain=settings.feishu_domain),
                           tokens)
        return FeishuDirectory(feishu), feishu
    if platform == "dingtalk":
        from adapters.dingtalk.config import DingTalkConfig
        from adapters.dingtalk.directory import DingTalkDirectory
        from adapters.dingtalk.sender import DingTalkSender

        config = DingTalkConfig.from_settings(settings)
        assert config is not None
        sender = DingTalkSender(config, tokens)
        return DingTalkDirectory(sender, settings.dingtalk_oapi_base), sender
    raise DirectorySettingsError(f"未知的平台：{platform}（可用：{'、'.join(PLATFORMS)}）")


def _failed(platform: str, message: str) -> dict[str, Any]:
    return {"platform": platform, "ok": False, "created": 0, "updated": 0, "deactivated": 0, "unchanged": 0,
            "errors": [{"message": message}]}


async def sync_directories(service: TicketService, settings: Settings, tokens: TokenCache, *,
                           platforms: Sequence[str] | None = None, force: bool = False) -> list[dict[str, Any]]:
    """Fetch and apply each platform in turn; one report per platform (see SyncReport.to_dict, plus `ok`)."""
    roles = role_mapping(settings)
    configured = configured_platforms(settings)
    wanted = list(platforms) if platforms else configured
    reports: list[dict[str, Any]] = []
    for platform in wanted:
        if platform not in PLATFORMS:
            reports.append(_failed(platform, f"未知的平台：{platform}（可用：{'、'.join(PLATFORMS)}）"))
            continue
        if platform not in configured:
            reports.append(_failed(platform, f"没有配置{PLATFORM_LABELS[platform]}的凭据，无法同步"))
            continue
        client, closable = build_client(platform, settings, tokens)
        try:
            snapshot = await client.fetch()
        except DirectoryFetchFailed as error:
            label = PLATFORM_LABELS[platform]
            reports.append(_failed(platform, f"拉取{label}通讯录失败：{error.reason}；本次没有做任何修改"))
            continue
        finally:
            await closable.close()
        try:
            report = await service.handle(SyncDirectory(snapshot, roles, settings.directory_max_deactivate_share,
                                                        force), SYSTEM_ACTOR)
        except TicketbotError as error:
            reports.append(_failed(platform, error.user_message))
            continue
        except Exception as error:  # rolled back whole (e.g. a concurrent sync won a race): report, go on
            log.exception("directory sync %s: applying the snapshot failed", platform)
            label = PLATFORM_LABELS[platform]
            reports.append(_failed(platform, f"应用{label}通讯录失败：{error!r}；本次没有做任何修改"))
            continue
        body = report.to_dict()
        body["ok"] = not report.errors
        reports.append(body)
    return reports


class DirectorySyncJob:
    """The runner of the daily timer in one process: one sync at a time, in the background."""

    def __init__(self, service: TicketService, settings: Settings, tokens: TokenCache) -> None:
        self.service = service
        self.settings = settings
        self.tokens = tokens
        self.task: asyncio.Task[list[dict[str, Any]]] | None = None
        self.last: list[dict[str, Any]] | None = None

    async def trigger(self) -> None:
        if self.task is not None and not self.task.done():
            log.warning("directory sync: the previous run is still going; this one is skipped")
            return
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> list[dict[str, Any]]:
        if not configured_platforms(self.settings):
            log.warning("directory sync: DIRECTORY_SYNC_AT is set but this process has no platform credentials "
                        "(WECOM_*, FEISHU_*, DINGTALK_*); nothing synced")
            self.last = []
            return []
        try:
            reports = await sync_directories(self.service, self.settings, self.tokens)
        except Exception:  # a background job: logged with its traceback, tomorrow's run is armed already
            log.exception("directory sync failed")
            raise
        try:
            await self.service.handle(TellDirectorySync(tuple(reports)), SYSTEM_ACTOR)
        except Exception:  # the sync itself is done: a failed notice is only logged
            log.exception("directory sync: telling the admins failed")
        for report in reports:
            (log.info if report.get("ok") else log.warning)(
                "directory sync %s: created %s, updated %s, deactivated %s, unchanged %s, errors %s",
                report["platform"], report["created"], report["updated"], report["deactivated"],
                report["unchanged"], report["errors"])
        self.last = reports
        return reports

    async def stop(self, grace_s: float = 30.0) -> None:
        """A run in progress may finish (it is one transaction: cancelled, it would only roll back)."""
        install_directory_runner(self.service, None)
        if self.task is not None and not self.task.done():
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self.task), grace_s)
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def install_directory_job(service: TicketService, settings: Settings, tokens: TokenCache, *,
                                arm: bool = True) -> DirectorySyncJob:
    """Install this process's runner and, with `arm` (a process that fires timers: `serve` without
    REDIS_URL, `ticketbot worker`), make the daily timer match DIRECTORY_SYNC_AT: armed, moved or
    cancelled. Processes that fire no timers leave it alone, so a `ticketbot dingtalk` started without
    the setting does not switch off what the others run."""
    check_settings(settings)
    job = DirectorySyncJob(service, settings, tokens)
    install_directory_runner(service, job.trigger)
    if arm:
        await service.handle(ArmDirectorySync(settings.directory_sync_at or None), SYSTEM_ACTOR)
    return job
