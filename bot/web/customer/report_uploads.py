"""Photos the report page keeps between two rounds of one form (the code was sent, a field was
missing, another photo was refused): a browser cannot refill a file input, so the page keeps the
already-checked photos here and the form carries their tokens in hidden fields.

A token is 128 random bits (not guessable, so one person's kept photo is nobody else's), the file
lives under DATA_DIR/report_uploads/ and is deleted when used or after KEEP_FOR.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from pathlib import Path

FOLDER = "report_uploads"
KEEP_FOR_S = 3600.0
TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")


class KeptPhotos:
    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / FOLDER

    async def keep(self, data: bytes) -> str:
        token = secrets.token_urlsafe(16)
        await asyncio.to_thread(self._write, token, data)
        return token

    def _write(self, token: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._sweep()
        temp = self.folder / f".{token}.part"
        temp.write_bytes(data)
        os.replace(temp, self.folder / token)

    async def load(self, token: str) -> bytes | None:
        """The kept photo's bytes; None for a malformed, unknown or expired token."""
        if not TOKEN.fullmatch(token):
            return None
        path = self.folder / token
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError:
            return None

    async def drop(self, token: str) -> None:
        if TOKEN.fullmatch(token):
            with contextlib.suppress(OSError):
                await asyncio.to_thread((self.folder / token).unlink)

    def _sweep(self) -> None:
        cutoff = time.time() - KEEP_FOR_S
        for path in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
