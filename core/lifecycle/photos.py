"""Photos as evidence: what one stored photo is, and the pure rules about them.

The bytes live outside the core (bot/photo_store.py writes DATA_DIR/photos/<sha256>); the
core keeps a row per upload (ticket, uploader, hash, purpose) and counts them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# Why a photo was taken, decided by the ticket's state when it arrived.
CHECKIN = "checkin"  # at the site, before work (with a location)
WORK = "work"  # during work: fault part, meter reading, replaced part's nameplate
CUSTOMER = "customer"  # sent by the customer (not evidence of work)

MAX_PHOTO_BYTES = 5 * 1024 * 1024
# Magic numbers of the image formats chat platforms send.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


@dataclass(frozen=True, slots=True)
class PhotoRecord:
    ticket_number: str
    uploader_id: str
    sha256: str
    path: str
    size: int
    purpose: str
    created_at: datetime


def image_format(data: bytes) -> str | None:
    """The image format by magic number, or None when the bytes are not an image we accept."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and data[8:12] in {b"heic", b"heix", b"mif1", b"msf1"}:
        return "heic"
    return None


def distinct_photos(photos: Iterable[PhotoRecord], *, purpose: str, since: datetime | None,
                    uploader_id: str | None = None) -> int:
    """How many different images (by hash) of this purpose arrived since `since`: re-sending one counts once."""
    return len({
        p.sha256 for p in photos
        if p.purpose == purpose and (since is None or p.created_at >= since)
        and (uploader_id is None or p.uploader_id == uploader_id)
    })
