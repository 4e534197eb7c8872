"""Handwritten signatures from the sign-off page (issue 21): DATA_DIR/signatures/<sha256>.png.

The page sends the canvas as a PNG (a data URL). It is decoded with Pillow before anything else — a file
that is not a whole PNG, is too big, or is blank is refused with a message saying so — then rendered on
white with the 电子签名水印: the ticket number and the time of signing across it, so the image cannot be
reused for another ticket unnoticed. The SHA-256 of the rendered PNG is what the sign-off records
(`signed_off.signature_image`, core/lifecycle/signoff.py) and the audit chain seals; the file is stored under
that hash (content-addressed, like photos: bot/photo_store.py), written before the sign-off is submitted —
a refused sign-off leaves at most an unreferenced file, never a reference to a missing one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from core.errors import InvalidInput
from core.lifecycle.photos import image_format

FOLDER = "signatures"
MAX_SIGNATURE_BYTES = 512 * 1024  # a phone canvas (~1200×600 px) of strokes is 10–60 KB
MAX_SIDE_PX = 4000
MIN_SIDE_PX = 100
MIN_INK_PX = 30  # fewer drawn pixels than this is a dot, not a signature
# Fonts that can write the watermark's Chinese; without one the watermark is written in Latin letters.
CJK_FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
             "/System/Library/Fonts/PingFang.ttc")
DATA_URL_PREFIX = "data:image/png;base64,"


@dataclass(frozen=True, slots=True)
class StoredSignature:
    sha256: str
    size: int
    path: Path
    relative_path: str


def decode_signature(text: str) -> bytes:
    """The PNG bytes of the canvas's data URL (or plain base64); InvalidInput for anything else."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput("请在签名框内手写签名后再提交。", field="signature")
    if text.startswith("data:"):
        if not text.startswith(DATA_URL_PREFIX):
            raise InvalidInput("签名必须是 PNG 图片，请重新签名。", field="signature")
        text = text[len(DATA_URL_PREFIX):]
    if len(text) > MAX_SIGNATURE_BYTES * 4 // 3 + 8:
        raise InvalidInput(f"签名图片太大（超过 {MAX_SIGNATURE_BYTES // 1024} KB），请清除后重新签名。",
                           field="signature")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput("签名图片无法解析，请清除后重新签名。", field="signature") from error


def check_signature(data: bytes) -> Image.Image:
    """Decode (blocking: run in a thread): a whole PNG of sensible size with ink on it."""
    if len(data) > MAX_SIGNATURE_BYTES:
        raise InvalidInput(f"签名图片太大（{len(data) // 1024} KB），请清除后重新签名。", field="signature")
    if image_format(data) != "png":
        raise InvalidInput("签名必须是 PNG 图片，请重新签名。", field="signature")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size
            if max(width, height) > MAX_SIDE_PX or min(width, height) < MIN_SIDE_PX:
                raise InvalidInput(f"签名图片尺寸不合适（{width}×{height}），请重新签名。", field="signature")
            image.load()
            rgba = image.convert("RGBA")
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InvalidInput("签名图片无法识别（文件不完整或已损坏），请清除后重新签名。", field="signature") from error
    if _ink(rgba) < MIN_INK_PX:
        raise InvalidInput("签名框是空的，请手写签名后再提交。", field="signature")
    return rgba


def _ink(image: Image.Image) -> int:
    """Drawn pixels: opaque and not white (a canvas is transparent or white where nothing was drawn)."""
    alpha = image.getchannel("A").point(lambda a: 255 if a > 64 else 0)
    dark = image.convert("L").point(lambda v: 255 if v < 200 else 0)
    both = Image.composite(dark, Image.new("L", image.size, 0), alpha)
    histogram = both.histogram()
    return int(histogram[255])


def _font(size: int) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, bool]:
    for path in CJK_FONTS:
        if os.path.exists(path):
            try:
                return ImageFont.truetype(path, size), True
            except OSError:
                continue
    return ImageFont.load_default(size), False


def render_watermarked(signature: Image.Image, number: str, signed_at: datetime) -> bytes:
    """The signature on white with the watermark (ticket number, time) across it, as PNG bytes."""
    width, height = signature.size
    band = max(28, height // 8)
    canvas = Image.new("RGB", (width, height + band), "white")
    canvas.paste(signature, (0, 0), signature)
    draw = ImageDraw.Draw(canvas, "RGBA")
    font, cjk = _font(max(12, band // 2))
    stamp = f"{signed_at:%Y-%m-%d %H:%M:%S %z}"
    caption = f"电子签名 · 工单 {number} · {stamp}" if cjk else f"E-SIGNATURE {number} {stamp}"
    draw.text((8, height + (band - band // 2) // 2), caption, fill=(60, 60, 60, 255), font=font)
    # Faint and repeated across the strokes, so a crop of the signature still carries it.
    small, _ = _font(max(10, band // 3))
    mark = f"{number} {signed_at:%Y-%m-%d %H:%M}"
    step_y = max(40, band * 2)
    for row, y in enumerate(range(4, height, step_y)):
        draw.text((8 + (row % 2) * width // 3, y), mark, fill=(20, 99, 216, 56), font=small)
    out = io.BytesIO()
    canvas.save(out, "PNG", optimize=True)
    return out.getvalue()


class SignatureStore:
    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / FOLDER

    def path_of(self, sha256: str) -> Path:
        return self.folder / f"{sha256}.png"

    async def store(self, data_url: str, *, number: str, signed_at: datetime) -> StoredSignature:
        """Check, watermark and keep a signature; InvalidInput (with a message for the customer) otherwise."""
        raw = decode_signature(data_url)
        return await asyncio.to_thread(self._store, raw, number, signed_at)

    def _store(self, raw: bytes, number: str, signed_at: datetime) -> StoredSignature:
        rendered = render_watermarked(check_signature(raw), number, signed_at)
        digest = hashlib.sha256(rendered).hexdigest()
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path_of(digest)
        fd, temporary = tempfile.mkstemp(prefix=".incoming-", dir=self.folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(rendered)
        os.replace(temporary, target)  # same hash, same bytes: replacing is harmless and atomic
        return StoredSignature(digest, len(rendered), target, f"{FOLDER}/{digest}.png")
