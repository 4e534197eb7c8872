"""A second service process for the refresh tests (no tests here).

Run as `python -m tests.test_rules_admin_process DATABASE_URL DATA_DIR TEXT`: starts a Runtime
with its background loops (the 2 s sweep included) on that database and prints one JSON line
whenever its classification of TEXT or its rules version changes, until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path


async def watch(database_url: str, data_dir: str, text: str) -> None:
    from bot.runtime import Runtime
    from bot.settings import Settings

    settings = Settings(_env_file=None, database_url=database_url, data_dir=Path(data_dir),  # type: ignore[call-arg]
                        playground="off")
    runtime = Runtime(settings)
    await runtime.start(background=True)
    stdin_closed = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    last: tuple[int, str | None] | None = None
    try:
        while not stdin_closed.done():
            await runtime.rulebook.ready()
            result = runtime.rulebook.classify(text)
            seen = (runtime.rulebook.version, result.category)
            if seen != last:
                print(json.dumps({"version": seen[0], "category": seen[1]}, ensure_ascii=False), flush=True)
                last = seen
            await asyncio.sleep(0.1)
    finally:
        await runtime.stop()


if __name__ == "__main__":
    asyncio.run(watch(*sys.argv[1:4]))
