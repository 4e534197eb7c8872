"""WAL checkpoints for the embedded SQLite database, off the event loop.

Why: SQLite copies the write-ahead log back into the database file (and fsyncs it) inside the
commit that pushes the log past `wal_autocheckpoint` pages. Our SQLite statements run inline on
the event loop (storage/sqlite/inline.py), so that commit stalled every request in the process:
under intake load one commit in ~20 did it, at 6-8 ms each on this machine's disk, more on a slow
one. Here a thread with its own connection checkpoints the log every `every_s` seconds instead;
a PASSIVE checkpoint waits for no reader or writer, and the sqlite3 module releases the GIL while
SQLite copies and syncs.

Rewinding the log. SQLite starts the log over only when a writer begins while every frame has
been copied back, which a checkpoint running beside a steady writer never leaves behind: new
frames land while it copies. Left to itself the log then grows to the inline threshold, and from
there on commits checkpoint inline (seen: 6-50 ms each, the whole process waiting). So once the
log is past REWIND_FRAMES, the thread copies it once more while this process's writes are paused
(`pause`: it holds the engine's one connection, so no transaction of ours is open or can begin;
the loop goes on): only what came since the last pass is left to copy, and the next transaction
starts the log over.

The inline automatic checkpoint stays on, at a higher threshold: the safety net should this
thread fall behind, not run (a Runtime started without background loops), or another process
keep writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

log = logging.getLogger(__name__)

# Pages (4 KiB) the log may grow to before a committing connection checkpoints inline: ~40 MB,
# ten times SQLite's default. Fault intake at full speed writes ~6,000 pages a second.
INLINE_CHECKPOINT_PAGES = 10_000
# A log smaller than this is not worth a checkpoint (and the fsync that comes with it).
MIN_LOG_BYTES = 1 << 20
# Frames in the log past which a checkpoint pauses our writes to finish, so that the log starts over.
REWIND_FRAMES = 2_500


class WalCheckpointer:
    def __init__(self, path: Path, *, every_s: float = 0.25,
                 pause: Callable[[], AbstractAsyncContextManager[object]] | None = None) -> None:
        """`pause`: while its context is entered, this process starts no transaction (see above)."""
        self.path = path
        self.every_s = every_s
        self._pause = pause
        self.rewinds = 0  # passes made with our writes paused
        self._connection: sqlite3.Connection | None = None
        # A cancelled asyncio.to_thread leaves its thread running (or about to run): close() waits
        # for it here, and a call that starts after close() does nothing. Closing the connection
        # under a running checkpoint crashed the interpreter (a segfault, seen in CI).
        self._lock = threading.Lock()
        self._closed = False
        self.checkpoints = 0  # completed checkpoint calls, for tests and curiosity

    def _checkpoint(self) -> tuple[int, int, int]:
        with self._lock:
            if self._closed:
                return (0, 0, 0)
            if self._connection is None:
                # check_same_thread=False: asyncio.to_thread may pick another pool thread next time
                # (the lock keeps the calls apart).
                self._connection = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False,
                                                   isolation_level=None)
            busy, frames, copied = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            return int(busy), int(frames), int(copied)

    async def checkpoint(self) -> tuple[int, int, int]:
        """(busy, frames in the log, frames copied to the database file), as SQLite reports them."""
        return await asyncio.to_thread(self._checkpoint)

    def _log_written(self) -> tuple[int, int] | None:
        """(size, mtime) of the log when it is big enough to checkpoint; None otherwise."""
        try:
            stat = Path(f"{self.path}-wal").stat()
        except OSError:
            return None
        return (stat.st_size, stat.st_mtime_ns) if stat.st_size >= MIN_LOG_BYTES else None

    async def run_forever(self) -> None:
        checkpointed_at: tuple[int, int] | None = None
        while True:
            await asyncio.sleep(self.every_s)
            # The log file keeps its size after a checkpoint: only a write since the last one counts.
            written = self._log_written()
            if written is None or written == checkpointed_at:
                continue
            checkpointed_at = written
            try:
                _, frames, _ = await self.checkpoint()
                if frames >= REWIND_FRAMES and self._pause is not None:
                    async with self._pause():
                        await self.checkpoint()  # what came since; then the next transaction rewinds the log
                    self.rewinds += 1
            except sqlite3.Error:
                log.exception("WAL checkpoint failed (the inline automatic checkpoint still bounds the log)")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._connection.close()
                self._connection = None
