"""Composition root: wires settings → storage → core → conversation → adapters and loops."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
from collections.abc import Callable
from typing import Any

from adapters.base import PlatformAdapter
from bot import metrics
from bot.audit_key import seal_legacy_chain, use_audit_key
from bot.chat.conversation import Conversation
from bot.chat.report_reads import drain_report_reads
from bot.jobs.delivery import InboxProcessor, OutboxDispatcher
from bot.jobs.directory_job import DirectorySyncJob, install_directory_job
from bot.jobs.privacy import RetentionPurge
from bot.jobs.timer_loop import InProcessTimerEngine
from bot.jobs.webhooks import WebhookDispatcher
from bot.rules.rulebook import RuleBook
from bot.service_config import service_config
from bot.settings import Settings
from bot.token_cache import MemoryTokenCache, RedisTokenCache
from core.clock import SystemClock
from core.intake.limits import IntakeLimits, configure_intake
from core.ports import Clock, TokenCache
from core.service import TicketService
from storage.database import create_engine, is_sqlite, session_factory, sqlite_path
from storage.inbox import SqlInbox
from storage.migrate import create_fresh_schema, is_at_head, upgrade
from storage.outbox import SqlOutbox, on_rows_queued
from storage.sqlite.wal_checkpoint import INLINE_CHECKPOINT_PAGES, WalCheckpointer
from storage.timer_store import SqlTimerStore
from storage.unit_of_work import SqlUnitOfWork
from storage.webhook_store import SqlWebhookStore

log = logging.getLogger(__name__)

SQLITE_BATCH = 3  # inbox rows per member of the group commit (more: a request may wait for more of them)


# Modules that register chat commands (@text_command) and inbound handlers; imported once.
# bot.chat.sla comes after bot.chat.lifecycle: it wraps the IMAGE handler (customer photos confirm 紧急).
COMMAND_MODULES: tuple[str, ...] = ("bot.chat.reports", "bot.chat.lifecycle", "bot.chat.sla", "bot.chat.sop",
                                    "bot.chat.template", "bot.chat.rules", "bot.chat.triage",
                                    "bot.chat.dispatch", "bot.chat.root_cause",
                                    "bot.chat.position", "bot.chat.ticket_admin", "bot.chat.front_desk",
                                    "bot.chat.org", "bot.chat.hub", "bot.chat.console_link",
                                    "bot.chat.tracking_link")


class Runtime:
    def __init__(self, settings: Settings, *, clock: Clock | None = None, processes_inbox: bool | None = None) -> None:
        """`processes_inbox`: whether this process handles inbox rows (and sweeps left-behind ones).
        Default: unless PROCESS_INBOX=worker, in which case web processes hand rows to the workers
        and `ticketbot worker` builds its Runtime with True."""
        if settings.process_inbox == "worker" and not settings.redis_url:
            raise ValueError("PROCESS_INBOX=worker needs REDIS_URL: rows reach `ticketbot worker` through arq")
        self.processes_inbox = settings.process_inbox == "web" if processes_inbox is None else processes_inbox
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.database_url = settings.resolved_database_url()
        # SQLite: the log is checkpointed by a thread, not inside a commit on the event loop.
        wal_path = sqlite_path(self.database_url)
        # Holding the engine's one connection pauses this process's writes while the log is rewound.
        self.checkpointer = WalCheckpointer(wal_path, pause=lambda: self.engine.connect()) \
            if wal_path is not None else None
        self.engine = create_engine(self.database_url, inline_checkpoint_pages=INLINE_CHECKPOINT_PAGES
                                    if self.checkpointer else None)
        use_audit_key(self.engine, settings)  # AUDIT_KEY, or DATA_DIR/audit.key made on the first start
        self.channels = settings.delivery_channels()
        self.sessions = session_factory(self.engine)
        self.rulebook = RuleBook()
        self.service = TicketService(self.uow, self.clock, self.rulebook, service_config(settings))
        configure_intake(self.service, IntakeLimits.from_values(  # the per-sender limit, follow-ups
            settings.report_limit_per_sender, settings.report_limit_window_minutes, settings.follow_up_window_hours,
            settings.location_window_minutes))
        # Issue 20: closed tickets lose the customer's contact data after the retention (bot/jobs/privacy.py).
        self.retention = RetentionPurge(self.sessions, self.service, settings.customer_data_retention_days)
        for module in COMMAND_MODULES:
            importlib.import_module(module)
        self.conversation = Conversation(self.service, {"runtime": self}, lookup_factory=self.lookup_uow)
        # The 打开后台 button on staff's help card works in every process, not only one that saw 帮助/后台.
        from bot.chat.console_link import attach_console_links
        attach_console_links(self)
        # SQLite has one connection: one worker, a few rows per member of the group commit, in turns
        # with the inbox inserts that acknowledge platforms (bot/jobs/delivery.py). PostgreSQL: 8
        # workers, a transaction per message.
        self.processor = InboxProcessor(SqlInbox(self.sessions, self.clock), self.conversation.handle,
                                        concurrency=8, batch=SQLITE_BATCH if is_sqlite(self.database_url) else 1)
        self.inbox = self.processor.inbox
        self.inbox.on_accepted = self.processor.schedule
        self.outbox = SqlOutbox(self.sessions, self.clock)
        # Issue 23: /metrics counts inbox rows and delivery outcomes (a counter increment each).
        self.inbox.accept_row = metrics.count_inbox(  # type: ignore[method-assign,assignment]
            self.inbox.accept_row)
        self.processor.handle_claimed = metrics.count_handling(  # type: ignore[method-assign,assignment]
            self.processor.handle_claimed)
        for outcome, mark in (("sent", "mark_sent"), ("retry", "mark_retry"), ("dead", "mark_dead")):
            setattr(self.outbox, mark, metrics.count_outcome(getattr(self.outbox, mark), outcome))
        self.redis: Any = None
        self._handoff: Any = None  # bot.jobs.arq_inbox.ArqInboxHandoff when the workers process the inbox
        self.tokens: TokenCache = MemoryTokenCache()
        if settings.redis_url:
            from redis.asyncio import Redis

            self.redis = Redis.from_url(settings.redis_url)
            self.tokens = RedisTokenCache(self.redis)
            # arq is the alarm clock: timers get a deferred job right after their transaction commits.
            from arq.connections import ArqRedis

            from bot.jobs.arq_timers import ArqTimerAlarm

            arq = ArqRedis(connection_pool=self.redis.connection_pool)
            self.service.timers_scheduled = ArqTimerAlarm(arq).enqueue
            if not self.processes_inbox:
                from bot.jobs.arq_inbox import ArqInboxHandoff

                self._handoff = ArqInboxHandoff(arq)
                self.inbox.on_accepted = self._handoff
        # Built now (not at start) because their HTTP routes must exist before the app starts.
        self.adapters: list[PlatformAdapter] = self._build_adapters()
        self.dispatcher = OutboxDispatcher(self.outbox, {a.platform: a.sender for a in self.adapters})
        self.timer_store = SqlTimerStore(self.sessions)
        self.timer_engine = InProcessTimerEngine(self.timer_store, self.service, max_sleep_s=0.5)
        # Issue 23: outbound webhooks, delivered by the processes that handle the inbox (docs/webhooks.md).
        self.webhooks = WebhookDispatcher(SqlWebhookStore(self.sessions, self.clock), self.clock,
                                          timeout_s=settings.webhook_timeout_s,
                                          concurrency=settings.webhook_concurrency,
                                          allow_private=settings.webhook_allow_private)
        self._tasks: list[asyncio.Task[None]] = []
        self._unwatch_outbox: Callable[[], None] = lambda: None
        self.directory_job: DirectorySyncJob | None = None  # set by start()
        # Absolute base of links sent to people (PUBLIC_BASE_URL); build_app sets it from the bind.
        self.public_base_url = settings.public_base("127.0.0.1", 8080)
        # Issue 21: every message to a ticket's customer carries its tracking URL (bot/tracking_links.py).
        from bot.tracking_links import attach_tracking
        from storage.audit_keys import audit_key_for

        self.tracking = attach_tracking(self.service, audit_key_for(self.engine), base_url=lambda: self.public_base_url,
                                        uow_factory=self.lookup_uow, clock=self.clock,
                                        days_after_close=settings.tracking_link_days_after_close)

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.sessions, channels=self.channels)

    def lookup_uow(self) -> SqlUnitOfWork:
        """A unit of work for a lookup: no savepoint of its own in the inbox's shared transaction."""
        return SqlUnitOfWork(self.sessions, channels=self.channels, savepoint=False)

    async def prepare_database(self, *, bind: str | None = None) -> None:
        """Migrate to the newest schema and, on an empty database, load the demo directory when
        LOAD_DEMO wants it for this bind address (`bot.demo.demo_wanted`; None: no HTTP bind)."""
        if not await is_at_head(self.engine) and not await create_fresh_schema(self.engine):
            await asyncio.to_thread(upgrade, self.database_url)
        await seal_legacy_chain(self.uow, self.clock.now())  # a chain from before audit keys, once
        from bot.demo import demo_wanted, directory_is_empty, load_demo

        if demo_wanted(self.settings.load_demo, bind) and await directory_is_empty(self.sessions):
            added = await load_demo(self.sessions, self.clock.now())
            log.info("loaded the demo directory (%s people)", added)

    async def start(self, *, background: bool = True, inbound: bool = True) -> None:
        """`inbound=False` (a worker): platform senders work, but no long connection receives."""
        async with self.uow() as uow:
            await self.rulebook.refresh(uow)
        # Issue 20: the daily directory sync's timer follows DIRECTORY_SYNC_AT; this process can run it.
        self.directory_job = await install_directory_job(self.service, self.settings, self.tokens,
                                                         arm=background and not self.settings.redis_url)
        for adapter in self.adapters if inbound else ():
            await adapter.start()
        if background:
            self._unwatch_outbox = on_rows_queued(self.dispatcher.wake.set)
            self._spawn(self.dispatcher.run_forever())
            if self.processes_inbox:
                self._spawn(self.webhooks.run_forever())
            self._spawn(self._sweep_forever())
            if self.checkpointer is not None:
                self._spawn(self.checkpointer.run_forever())
            if not self.settings.redis_url:
                self._spawn(self.timer_engine.run_forever())
            # jieba's dictionary load takes ~1 s: do it off the loop so start-up never blocks on it.
            self._spawn(self._warm_and_freeze())
            # Issues 22/24: 报表 and the dashboards' aggregates, folded in the background (not in intake).
            from bot.jobs.report_aggregates import start_report_aggregator

            self._spawn(start_report_aggregator(self).run_forever())

    async def warm_for_intake(self) -> None:
        """What the first fault report after a start would otherwise build on the event loop (issue 24): the
        dispatch index, this year's and next year's statutory calendar (python-holidays, in a thread), the
        SLA matrix. The web app and inbox workers call it after `start`, before they take messages."""
        from core.dispatch.live import live_index
        from core.sla import calendar as sla_calendar
        from core.sla.stored_config import load_matrix

        await asyncio.to_thread(sla_calendar.warm_up, self.clock.now().date())
        async with self.uow() as uow:
            await live_index(self.service).prepare(uow.dispatch_store(), self.clock.now())
            await load_matrix(uow)

    async def _warm_and_freeze(self) -> None:
        await self.rulebook.warm()
        # What start-up loaded (the ~500k-entry dictionary, modules, tables) lives as long as the
        # process: taken out of the collector's generations, full collections no longer walk it.
        gc.freeze()

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro))

    async def _sweep_forever(self, every_s: float = 2.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                if self.processes_inbox:
                    await self.processor.sweep()
                async with self.uow() as uow:
                    await self.rulebook.refresh(uow)
                    await self._refresh_workflow(uow)
                await self.retention.maybe_run(self.clock.now())
            except Exception:
                log.exception("sweep failed")

    async def _refresh_workflow(self, uow: SqlUnitOfWork) -> None:
        """A template saved in another process applies here without waiting for a lifecycle command."""
        from core.lifecycle.common import WORKFLOW_KIND, install_workflow, installed_version
        from core.workflow import Workflow

        latest = await uow.latest_config(WORKFLOW_KIND)
        if latest is not None and installed_version(self.service) != latest[0]:
            install_workflow(self.service, latest[0], Workflow.from_dict(latest[1]))

    def _build_adapters(self) -> list[PlatformAdapter]:
        adapters: list[PlatformAdapter] = []
        # Platform SDKs are imported only for configured platforms (lark-oapi alone costs ~2.5 s).
        for enabled, build in (
            (self.settings.wecom_enabled, "bot.platforms.wecom"),
            (self.settings.feishu_enabled, "bot.platforms.feishu"),
            (self.settings.dingtalk_enabled, "bot.platforms.dingtalk"),
            (self.settings.wecom_kf_enabled, "bot.platforms.wecom_kf"),  # issue 21: 微信客服
            (self.settings.sms_provider is not None, "bot.platforms.sms"),  # issue 21: SMS as a channel
        ):
            if enabled:
                adapters.append(importlib.import_module(build).build_adapter(self))
        return adapters

    async def stop(self) -> None:
        # Inbound first, so nothing new arrives while the last messages are processed.
        for adapter in self.adapters:
            await adapter.stop()
        self._unwatch_outbox()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.dispatcher.drain()
        await self.webhooks.close()
        if self.directory_job is not None:
            await self.directory_job.stop()
        await self.processor.drain()
        if self._handoff is not None:
            await self._handoff.drain()
        if self.redis is not None:
            await self.redis.aclose()
        if self.checkpointer is not None:
            self.checkpointer.close()
        await drain_report_reads(self.engine)  # a report job in a thread must not outlive the engine's loop
        await self.engine.dispose()
        # What start-up froze (see _warm_and_freeze) is collectable again: a process that starts and stops
        # runtimes again and again (the tests) would otherwise keep every stopped one's objects for ever.
        gc.unfreeze()
