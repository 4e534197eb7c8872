"""Photo bytes on disk, content-addressed: DATA_DIR/photos/<sha256>.

A photo is decoded before anything else happens to it: a file that only starts like an image
(a JPEG header and random bytes) or a thumbnail is not evidence, and the technician hears that
it did not count. The core sees the verdict and the dimensions, never the bytes.

A photo is staged to a temporary file first and moved into place only after the core has
accepted it (AddPhoto committed), so a refused photo leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from core.errors import InvalidInput
from core.lifecycle.photos import MAX_PHOTO_BYTES, image_format

FOLDER = "photos"
# Evidence must show something: each side at least this many pixels (an icon, a sticker or a
# thumbnail is not a photo of a fault). Phones send 720–4000 px; chat platforms never go below 64.
MIN_SIDE_PX = 64
# Decoding is bounded: more pixels than a 48-megapixel camera makes is refused before decoding.
MAX_PIXELS = 50_000_000
# What Pillow decodes (HEIC needs a plugin we do not ship: the platforms send JPEG anyway).
DECODABLE = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP"}
NOT_COUNTED = "没有计入工单照片"


@dataclass(frozen=True, slots=True)
class StagedPhoto:
    sha256: str
    size: int
    format: str
    width: int
    height: int
    temp_path: Path
    final_path: Path
    relative_path: str  # what the database keeps: relative to DATA_DIR


def decode_base64_image(text: str) -> bytes:
    try:
        return base64.b64decode(text.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput("图片数据无法解析，请重新发送。") from error


def inspect_image(data: bytes, kind: str) -> tuple[int, int]:
    """Decode the image (blocking: run it in a thread) and return its size; InvalidInput when it is
    not a whole image of a format we accept, or not a plausible photo."""
    unreadable = InvalidInput(f"这张图片无法识别（文件不完整或已损坏），{NOT_COUNTED}。请重新拍照发送。", format=kind)
    if kind not in DECODABLE:
        raise InvalidInput(f"暂不支持这种图片格式（{kind.upper()}），{NOT_COUNTED}。请以 JPG 或 PNG 发送。",
                           format=kind)
    try:
        with Image.open(io.BytesIO(data), formats=[DECODABLE[kind]]) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InvalidInput(f"照片像素过大（{width}×{height}），{NOT_COUNTED}。请压缩后重新发送。",
                                   width=width, height=height)
            if min(width, height) < MIN_SIDE_PX:
                raise InvalidInput(
                    f"照片太小（{width}×{height} 像素），不能作为凭证，{NOT_COUNTED}。"
                    f"请拍摄清晰的现场照片（至少 {MIN_SIDE_PX}×{MIN_SIDE_PX} 像素）。", width=width, height=height)
            image.draft("RGB", (MIN_SIDE_PX * 4, MIN_SIDE_PX * 4))  # JPEG: decode scaled down, still whole
            image.load()  # all the image data is decoded: a truncated or forged file fails here
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise unreadable from error
    return width, height


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
            raise InvalidInput(f"这不是可识别的图片（支持 JPG、PNG、GIF、BMP、WebP），{NOT_COUNTED}。请重新拍照发送。")
        return await asyncio.to_thread(self._check_and_write, data, kind)

    def _check_and_write(self, data: bytes, kind: str) -> StagedPhoto:
        width, height = inspect_image(data, kind)
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        fd, temp = tempfile.mkstemp(prefix=".incoming-", dir=self.folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return StagedPhoto(sha256=digest, size=len(data), format=kind, width=width, height=height,
                           temp_path=Path(temp), final_path=self.folder / digest, relative_path=f"{FOLDER}/{digest}")

    async def keep(self, staged: StagedPhoto) -> None:
        # Same hash, same bytes: replacing an existing file is harmless and atomic.
        await asyncio.to_thread(os.replace, staged.temp_path, staged.final_path)

    async def discard(self, staged: StagedPhoto) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(staged.temp_path.unlink)

    def path_of(self, sha256: str) -> Path:
        return self.folder / sha256
