"""PostgreSQL and PostgreSQL + Redis deployments for bench/intake.py (`--engine`).

- postgres: one `ticketbot serve` process on PostgreSQL, timers in-process.
- postgres-redis: PostgreSQL, Redis, PROCESS_INBOX=worker; measured twice, as one web + one
  `ticketbot worker` process and as two of each (the load alternates between the web processes'
  ports: `ticketbot serve` has no SO_REUSEPORT option).

The database server is, by default, a PostgreSQL cluster of the run's own (`initdb` as the postgres
user, on a free port; the shared server's fsync / synchronous_commit / shared_buffers copied), with
pg_stat_statements preloaded, so that the service's SQL statements can be counted: the service
connects as role `ticketbot`, the bench's own reads as `postgres`, and statements are summed over the
`ticketbot` role in the door's fresh database (BEGIN, COMMIT and SAVEPOINTs included: each is a round
trip). `--postgres URL` uses an existing server instead (statements counted only if it preloads
pg_stat_statements). Redis is a private redis-server per deployment: other sessions' tests flush the
shared one, and `INFO commandstats` before and after the load counts this deployment's Redis commands
(the workers' idle polling included: it is part of the cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis_scratch import private_redis  # bench/, on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
SHARED_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), Path("/usr/bin"))
COPIED_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "jit")
SERVICE_ROLE = "ticketbot"


@dataclass(frozen=True)
class EngineSetup:
    label: str  # printed
    engine: str  # postgres | postgres-redis
    webs: int = 1
    workers: int = 0


def setups(engines: list[str]) -> list[EngineSetup]:
    out: list[EngineSetup] = []
    for engine in engines:
        if engine == "postgres":
            out.append(EngineSetup("postgres", "postgres"))
        elif engine == "postgres-redis":
            out += [EngineSetup("pg+redis 1w+1wk", engine, 1, 1), EngineSetup("pg+redis 2w+2wk", engine, 2, 2)]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_cpu_s(pid: int) -> float:
    """utime + stime of a process's live child processes (the report worker, which folds the report
    aggregates), whichever of its threads started them; a child gone meanwhile counts nothing."""
    total = 0.0
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for child in pids:
            with contextlib.suppress(OSError, IndexError, ValueError):  # gone meanwhile
                total += cpu_s(int(child))
    return total


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the database server ---------------------------------------------------------------------------


class PostgresServer:
    """A private cluster (default) or an existing server given by its admin URL."""

    def __init__(self, admin_url: str | None, *, socket: bool = False) -> None:
        """`socket`: the service connects through the private cluster's Unix socket (the bench still
        reads over TCP)."""
        self.admin_url = admin_url or ""
        self.private = admin_url is None
        self.socket = socket
        self.folder: Path | None = None
        self.port = 0
        self.counts_statements = False

    async def start(self) -> None:
        import asyncpg

        if self.private:
            copied = await _shared_settings()
            self.folder = Path(tempfile.mkdtemp(prefix="tb-bench-pg-"))
            shutil.chown(self.folder, "postgres", "postgres")
            data = self.folder / "data"
            as_postgres = ["runuser", "-u", "postgres", "--"]
            subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                            "-E", "UTF8", "--no-sync"], check=True, stdout=subprocess.DEVNULL)
            port = free_port()
            options = [f"-p {port}", f"-k {self.folder}", "-c listen_addresses=127.0.0.1", "-c max_connections=300",
                       "-c shared_preload_libraries=pg_stat_statements", "-c pg_stat_statements.track_utility=on",
                       "-c pg_stat_statements.max=10000"] + [f"-c {k}={v}" for k, v in copied.items()]
            subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.folder / "log"),
                            "-o", " ".join(options), "-w", "start"], check=True, stdout=subprocess.DEVNULL)
            self.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            self.port = port
        conn = await asyncpg.connect(self.admin_url)
        try:
            preload = str(await conn.fetchval("SHOW shared_preload_libraries"))
            if "pg_stat_statements" in preload:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                self.counts_statements = True
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", SERVICE_ROLE):
                await conn.execute(f"CREATE ROLE {SERVICE_ROLE} LOGIN SUPERUSER")
        finally:
            await conn.close()

    def url(self, database: str, role: str = "postgres") -> str:
        base = self.admin_url.rsplit("/", 1)[0]
        return re.sub(r"://[^@/]*@", f"://{role}@", base) + f"/{database}"

    def service_url(self, database: str) -> str:
        """The service's DATABASE_URL: loopback TCP, or the Unix socket (`socket`)."""
        if self.socket and self.folder is not None:
            return f"postgresql://{SERVICE_ROLE}@/{database}?host={self.folder}&port={self.port}"
        return self.url(database, SERVICE_ROLE)

    async def create_database(self) -> str:
        import asyncpg

        name = f"intake_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" OWNER {SERVICE_ROLE}')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def statements(self, database: str) -> tuple[int, int]:
        """(statements, COMMITs) the service role ran in `database` so far (0, 0 when not counted)."""
        if not self.counts_statements:
            return 0, 0
        import asyncpg

        conn = await asyncpg.connect(self.admin_url)
        try:
            row = await conn.fetchrow(
                "SELECT coalesce(sum(s.calls), 0), coalesce(sum(s.calls) FILTER (WHERE s.query ILIKE 'COMMIT%'), 0) "
                "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                "JOIN pg_roles r ON r.oid = s.userid WHERE d.datname = $1 AND r.rolname = $2", database, SERVICE_ROLE)
        finally:
            await conn.close()
        assert row is not None
        return int(row[0]), int(row[1])

    def stop(self) -> None:
        if self.private and self.folder is not None:
            subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D",
                            str(self.folder / "data"), "-m", "immediate", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(self.folder, ignore_errors=True)


async def _shared_settings() -> dict[str, str]:
    """The shared development server's durability and memory settings, so figures compare."""
    import asyncpg

    try:
        conn = await asyncpg.connect(SHARED_POSTGRES, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return {}
    try:
        rows = await conn.fetch("SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
                                list(COPIED_SETTINGS))
    finally:
        await conn.close()
    settings = {}
    for r in rows:  # shared_buffers is in 8 kB pages
        settings[r["name"]] = f"{int(r['setting']) * 8}kB" if r["unit"] == "8kB" else str(r["setting"])
    return settings


# --- Redis -------------------------------------------------------------------------------------------


async def redis_calls(url: str) -> tuple[int, int]:
    """(commands, EVALs): every command Redis ran (a script's own included), and the scripts (each one
    round trip that enqueues a commit's alarms or a turn's inbox hand-offs, bot/jobs/arq_timers.py)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    evals = sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_eval", "cmdstat_evalsha"))
    return sum(int(v["calls"]) for v in stats.values() if isinstance(v, dict)), evals


# --- a deployment: web process(es), worker(s), their database -----------------------------------------


@dataclass
class Deployment:
    """The interface bench/intake.py's Service has: process (the first web), port(s), cpu(), pending(),
    tickets(platform), counters(), size_mb(), stop()."""

    setup: EngineSetup
    server: PostgresServer
    database: str
    workdir: Path
    env: dict[str, str]
    webs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis: subprocess.Popen[bytes] | None = None
    redis_url: str | None = None
    _conn: Any = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.webs[0]

    @property
    def port(self) -> int:
        return self.ports[0]

    def cpu(self) -> float:
        return sum(cpu_s(p.pid) for p in self.webs + self.workers)

    def background_cpu(self) -> float:
        return sum(children_cpu_s(p.pid) for p in self.webs + self.workers)

    async def _read(self) -> Any:
        import asyncpg

        if self._conn is None:
            self._conn = await asyncpg.connect(self.server.url(self.database))
        return self._conn

    async def pending(self) -> int:
        conn = await self._read()
        inbox = await conn.fetchval("SELECT count(*) FROM inbox WHERE status IN ('pending', 'processing')")
        outbox = await conn.fetchval("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending') "
                                     "AND channel != 'local'")
        return int(inbox) + int(outbox)

    async def tickets(self, platform: str) -> dict[str, float]:
        conn = await self._read()
        rows = await conn.fetch("SELECT i.external_id, t.created_at FROM tickets t JOIN identities i "
                                "ON i.person_id = t.customer_id AND i.platform = $1", platform)
        out = {}
        for external_id, created in rows:
            at = created if isinstance(created, datetime) else datetime.fromisoformat(str(created))
            out[str(external_id)] = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
        return out

    async def counters(self) -> dict[str, int]:
        statements, commits = await self.server.statements(self.database)
        calls, evals = await redis_calls(self.redis_url) if self.redis_url else (0, 0)
        return {"statements": statements, "commits": commits, "redis": calls, "evals": evals}

    async def size_mb(self) -> float:
        conn = await self._read()
        return float(await conn.fetchval("SELECT pg_database_size(current_database())")) / 2**20

    async def close_reader(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def stop(self) -> None:
        for process in self.webs + self.workers:
            process.terminate()
        for process in self.webs + self.workers:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(10)


def _spawn(args: list[str], env: dict[str, str], workdir: Path, log_name: str) -> subprocess.Popen[bytes]:
    log = open(workdir / log_name, "wb")  # noqa: SIM115  (kept open for the child's lifetime)
    return subprocess.Popen([sys.executable, "-m", "bot.cli", *args], cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


async def start_deployment(setup: EngineSetup, server: PostgresServer, extra_env: dict[str, str],
                           wait_ready: Any) -> Deployment:
    """Fresh database; the first web process migrates it and loads the demo directory before the others start."""
    database = await server.create_database()
    workdir = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    dropped = ("REDIS_URL", "PYTHONDONTWRITEBYTECODE", "DATABASE_URL", "PROCESS_INBOX")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WECOM_", "FEISHU_", "DINGTALK_")) and k not in dropped}
    env.update(DATABASE_URL=server.service_url(database), DATA_DIR=str(workdir), PLAYGROUND="on",
               PYTHONPATH=str(ROOT), **extra_env)
    deployment = Deployment(setup, server, database, workdir, env)
    try:
        if setup.engine == "postgres-redis":
            deployment.redis, deployment.redis_url = await private_redis(workdir)
            env.update(REDIS_URL=deployment.redis_url, PROCESS_INBOX="worker")
        for i in range(setup.webs):
            port = free_port()
            deployment.webs.append(_spawn(["serve", "--port", str(port)], env, workdir, f"serve{i}.log"))
            deployment.ports.append(port)
            await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}/healthz", 60, deployment.webs[-1])
        for i in range(setup.workers):
            deployment.workers.append(_spawn(["worker"], env, workdir, f"worker{i}.log"))
        if setup.workers:
            await asyncio.sleep(3)  # the workers' start-up (jieba, the rule book) before the warm-up
        return deployment
    except BaseException:
        deployment.stop()
        raise


async def end_deployment(deployment: Deployment) -> None:
    await deployment.close_reader()
    deployment.stop()
    await deployment.server.drop_database(deployment.database)
    shutil.rmtree(deployment.workdir, ignore_errors=True)
