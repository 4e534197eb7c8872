"""Photo bytes on disk, content-addressed: DATA_DIR/photos/<sha256>.

A photo is staged to a temporary file first and moved into place only after the core has
accepted it (AddPhoto committed), so a refused photo leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidInput
from core.lifecycle.photos import MAX_PHOTO_BYTES, image_format

FOLDER = "photos"


@dataclass(frozen=True, slots=True)
class StagedPhoto:
    sha256: str
    size: int
    format: str
    temp_path: Path
    final_path: Path
    relative_path: str  # what the database keeps: relative to DATA_DIR


def decode_base64_image(text: str) -> bytes:
    try:
        return base64.b64decode(text.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput("图片数据无法解析，请重新发送。") from error


class PhotoStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.folder = data_dir / FOLDER

    async def stage(self, data: bytes) -> StagedPhoto:
        if not data:
            raise InvalidInput("图片是空的，请重新发送。")
        if len(data) > MAX_PHOTO_BYTES:
            limit_mb = MAX_PHOTO_BYTES // 1024 // 1024
            raise InvalidInput(f"图片太大（{len(data) // 1024} KB），请压缩到 {limit_mb} MB 以内。")
        kind = image_format(data)
        if kind is None:
            raise InvalidInput("这不是可识别的图片（支持 JPG、PNG、GIF、BMP、WebP、HEIC），请重新拍照发送。")
        return await asyncio.to_thread(self._write_temp, data, kind)

    def _write_temp(self, data: bytes, kind: str) -> StagedPhoto:
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        fd, temp = tempfile.mkstemp(prefix=".incoming-", dir=self.folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return StagedPhoto(sha256=digest, size=len(data), format=kind, temp_path=Path(temp),
                           final_path=self.folder / digest, relative_path=f"{FOLDER}/{digest}")

    async def keep(self, staged: StagedPhoto) -> None:
        # Same hash, same bytes: replacing an existing file is harmless and atomic.
        await asyncio.to_thread(os.replace, staged.temp_path, staged.final_path)

    async def discard(self, staged: StagedPhoto) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(staged.temp_path.unlink)

    def path_of(self, sha256: str) -> Path:
        return self.folder / sha256
