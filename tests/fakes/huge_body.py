"""A response body far larger than any photo, written lazily, that records how much of it was sent.

The platform fakes serve it for a media download (WeCom media/get, Feishu message resources,
DingTalk's download URL) to check that a download stops at the cap instead of reading everything:
`written` is what the fake managed to hand to the socket before the client hung up, `finished` is
whether the whole body went out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

JPEG_START = b"\xff\xd8\xff\xe0"


@dataclass
class HugeBody:
    size: int = 64 * 1024 * 1024
    declare_length: bool = True  # False: chunked transfer, the client learns the size only by reading
    chunk: int = 64 * 1024
    content_type: str = "image/jpeg"
    written: int = 0
    finished: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": self.content_type})
        if self.declare_length:
            response.content_length = self.size
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        block = JPEG_START + bytes(self.chunk - len(JPEG_START))
        try:
            while self.written < self.size:
                part = block[: min(self.chunk, self.size - self.written)]
                await response.write(part)
                self.written += len(part)
                block = bytes(self.chunk)
            await response.write_eof()
            self.finished = True
        except ConnectionError:  # the client hung up: what a capped download does
            pass
        finally:
            self.done.set()
        return response
