"""Downloading what a user sent (photos) from a platform: streamed, capped, aborted past the cap.

`response.read()` would hold the whole body in memory before anyone could check its size; a
platform (or whatever its download URL points to) could hand us gigabytes. Here a declared
Content-Length over the cap is refused before a byte is read, and a body without one is counted
chunk by chunk; past the cap the connection is closed and the rest is never read.

Too large is the user's problem, not a delivery failure: `MediaTooLarge` is an InvalidInput, so
the person who sent the photo is told at once why it was not taken and what to do (retrying the
download would give the same answer).
"""

from __future__ import annotations

import aiohttp

from core.errors import InvalidInput
from core.lifecycle.photos import MAX_PHOTO_BYTES

MAX_MEDIA_BYTES = MAX_PHOTO_BYTES
_CHUNK = 64 * 1024


class MediaTooLarge(InvalidInput):
    def __init__(self, limit: int) -> None:
        limit_mb = limit // 1024 // 1024
        message = f"图片太大（超过 {limit_mb} MB），没有收下。请压缩到 {limit_mb} MB 以内后重新发送。"
        super().__init__(message, limit=limit)


async def read_capped(response: aiohttp.ClientResponse, limit: int = MAX_MEDIA_BYTES) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        response.close()
        raise MediaTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            response.close()  # drops the connection: the rest of the body is never read
            raise MediaTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
