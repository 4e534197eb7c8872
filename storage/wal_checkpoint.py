"""WAL checkpoints for the embedded SQLite database, off the event loop.

Why: SQLite copies the write-ahead log back into the database file (and fsyncs it) inside the
commit that pushes the log past `wal_autocheckpoint` pages. Our SQLite statements run inline on
the event loop (storage/sqlite_inline.py), so that commit stalled every request in the process:
under intake load one commit in ~20 did it, at 6-8 ms each on this machine's disk, more on a slow
one. Here a thread with its own connection checkpoints the log every `every_s` seconds instead;
a PASSIVE checkpoint waits for no reader or writer, and the sqlite3 module releases the GIL while
SQLite copies and syncs.

The inline automatic checkpoint stays on, at a higher threshold. Under steady writes it is still
needed: SQLite rewinds the log only when a writer starts while every frame has been copied back,
which a checkpoint running beside the writer rarely leaves behind. When the log reaches that
threshold, the background thread has already copied all but the last fraction of a second of it,
so the inline checkpoint that rewinds the log is short. It is also the safety net should this
thread fall behind or not run (a Runtime started without background loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# Pages (4 KiB) the log may grow to before a committing connection checkpoints inline: ~40 MB,
# ten times SQLite's default. Fault intake at full speed writes ~6,000 pages a second.
INLINE_CHECKPOINT_PAGES = 10_000
# A log smaller than this is not worth a checkpoint (and the fsync that comes with it).
MIN_LOG_BYTES = 1 << 20


class WalCheckpointer:
    def __init__(self, path: Path, *, every_s: float = 0.25) -> None:
        self.path = path
        self.every_s = every_s
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
                await self.checkpoint()
            except sqlite3.Error:
                log.exception("WAL checkpoint failed (the inline automatic checkpoint still bounds the log)")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._connection.close()
                self._connection = None
