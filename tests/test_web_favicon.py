"""A browser tab shows an icon: /favicon.ico (and the page's SVG icon) are served, not 404."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import build_app
from tests.conftest import make_settings


def icon_images(data: bytes) -> list[tuple[int, bytes]]:
    """(size, image) of each entry of an .ico file, read by its header."""
    reserved, kind, count = struct.unpack_from("<HHH", data, 0)
    assert (reserved, kind) == (0, 1) and count >= 1
    images = []
    for i in range(count):
        width, _height, _colors, _, _planes, _bpp, size, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        images.append((width or 256, data[offset:offset + size]))
    return images


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
async def test_favicon_is_served_on_every_bind(sqlite_url: str, tmp_path: Path, host: str) -> None:
    app = build_app(make_settings(sqlite_url, tmp_path, playground=None, api_token="s3cret"), host=host)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/favicon.ico")
        assert resp.status == 200
        assert resp.content_type in {"image/x-icon", "image/vnd.microsoft.icon"}
        assert "max-age" in resp.headers.get("Cache-Control", "")
        images = icon_images(await resp.read())
        assert {16, 32} <= {size for size, _ in images}
        assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for _, image in images)

        resp = await client.get("/favicon.svg")
        assert resp.status == 200 and resp.content_type == "image/svg+xml"
        assert (await resp.text()).lstrip().startswith("<svg")


async def test_playground_page_names_its_icon(app_client: TestClient) -> None:
    page = await (await app_client.get("/playground")).text()
    assert '<link rel="icon" href="/favicon.svg" type="image/svg+xml">' in page
