"""A redis-server of a benchmark's own (timers_bench.py, intake_engines.py): on a free port, nothing saved to
disk, so no other test suite's FLUSHALL or keys disturb the run."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path


async def private_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """(the server process, its URL) once it answers PING."""
    from redis.asyncio import Redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            client = Redis.from_url(url)
            await client.ping()
            await client.aclose()
            return server, url
        except Exception:  # noqa: BLE001 — refused while the server starts
            await asyncio.sleep(0.05)
    server.kill()
    raise RuntimeError("the private redis-server did not start")
