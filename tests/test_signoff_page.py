"""Issue 21: the sign-off page `/t/{token}/sign` — the chat card's own SignOff path with a handwritten
signature (stored, watermarked, its hash in `signed_off` and the audit chain), and its bad input."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image, ImageDraw

from core.model import TicketStatus
from tests.conftest import runtime_of
from tests.test_lifecycle_support import Person, in_progress, snapshot, ticket, trail

S = TicketStatus
NONCE = re.compile(r'name="nonce" value="([^"]+)"')


def drawn_signature(width: int = 600, height: int = 200, *, strokes: bool = True) -> str:
    """A canvas export: transparent PNG with dark strokes (what signature_pad's toDataURL gives)."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    if strokes:
        draw = ImageDraw.Draw(image)
        draw.line([(40, 150), (120, 40), (200, 160), (300, 50), (420, 140), (540, 60)], fill=(17, 17, 17, 255),
                  width=4)
    out = io.BytesIO()
    image.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


async def signoff_page(client: TestClient, customer: str) -> tuple[str, str]:
    """A ticket awaiting the customer's signature; (number, its sign-off page path)."""
    number = await in_progress(client, customer, "tech-wang", photos=3)
    await Person(client, "tech-wang").say(f"完工 {number}")
    assert (await ticket(client, number)).status == S.PENDING_SIGNOFF
    url = runtime_of(client).tracking.url_for(await ticket(client, number))
    return number, urlsplit(url).path + "/sign"


async def form_of(client: TestClient, path: str) -> str:
    resp = await client.get(path)
    assert resp.status == 200
    match = NONCE.search(await resp.text())
    assert match
    return match.group(1)


def good(page_nonce: str, **changes: str) -> dict[str, str]:
    values = {"nonce": page_nonce, "cause_told": "true", "parts_confirmed": "true", "rating": "5",
              "comment": "师傅很准时", "signature": drawn_signature(), "action": "sign"}
    values.update(changes)
    return values


async def test_signing_on_the_page_closes_the_ticket_with_the_watermarked_signature(app_client: TestClient) -> None:
    client = app_client
    runtime = runtime_of(client)
    number, path = await signoff_page(client, "cust-page-sign")
    page = await client.get(path)
    body = await page.text()
    assert "已告知故障原因" in body and "配件更换已确认" in body and "signature_pad" in body and number in body
    nonce = NONCE.search(body).group(1)  # type: ignore[union-attr]

    resp = await client.post(path, data=good(nonce), allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == path.removesuffix("/sign")
    done = await ticket(client, number)
    assert done.status == S.CLOSED
    signed = done.data["signoff"]["signed"]
    assert signed["by"] == "cust-page-sign" and signed["rating"] == 5 and signed["comment"] == "师傅很准时"
    digest = signed["signature_image"]
    stored = runtime.settings.data_dir / "signatures" / f"{digest}.png"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    with Image.open(stored) as image:  # the signature on white, with the watermark band under it
        assert image.format == "PNG" and image.size[0] == 600 and image.size[1] > 200
        band = image.convert("L").crop((0, 200, 600, image.size[1]))
        assert band.getextrema()[0] < 160, "the watermark's caption is written in the band"
    # The same SignOff as the chat card: the card is used, the chain carries the hash.
    audit = (await (await client.get(f"/api/tickets/{number}")).json())["audit"]
    signed_events = [e for e in audit if e["kind"] == "signed_off"]
    assert len(signed_events) == 1 and signed_events[0]["payload"]["signature_image"] == digest
    action = [e for e in audit if e["kind"] == "card_action"][-1]
    assert action["actor_id"] == "cust-page-sign" and action["payload"]["values"]["signature_sha256"] == digest
    assert (await Person(client, "cust-page-sign").last_card("signoff"))["state"] == "used"
    # Afterwards the page says it is signed, and so does the tracking page.
    again = await client.get(path)
    assert "您已签字确认" in await again.text()
    assert "已结案" in await (await client.get(path.removesuffix("/sign"))).text()


async def test_a_double_submission_signs_once(app_client: TestClient) -> None:
    client = app_client
    number, path = await signoff_page(client, "cust-double")
    nonce = await form_of(client, path)
    first, second = await asyncio.gather(client.post(path, data=good(nonce), allow_redirects=False),
                                         client.post(path, data=good(nonce, rating="3"), allow_redirects=False))
    assert sorted([first.status, second.status]) == [200, 303]
    later = await client.post(path, data=good(nonce, rating="1"), allow_redirects=False)
    assert later.status == 200 and "您已签字确认" in await later.text()
    kinds = await trail(client, number)
    assert kinds.count("signed_off") == 1
    assert (await ticket(client, number)).data["signoff"]["signed"]["rating"] in {5, 3}  # whichever came first


async def test_a_ticket_not_awaiting_signoff_says_so_and_cannot_be_signed(app_client: TestClient) -> None:
    client = app_client
    number = await in_progress(client, "cust-not-yet", "tech-wang")
    path = urlsplit(runtime_of(client).tracking.url_for(await ticket(client, number))).path + "/sign"
    page = await client.get(path)
    assert page.status == 200
    text = await page.text()
    assert "当前不需要签字" in text and "检修中" in text and 'name="signature"' not in text
    before = await snapshot(client, number)
    nonce = runtime_of(client).tracking.page_nonce(path.split("/")[2], "sign")  # a form opened earlier
    resp = await client.post(path, data=good(nonce))
    assert resp.status == 409 and "当前不需要签字" in await resp.text()
    assert await snapshot(client, number) == before


@pytest.mark.parametrize("changes, status, message", [
    ({"cause_told": ""}, 400, "已告知故障原因"),
    ({"parts_confirmed": ""}, 400, "配件更换已确认"),
    ({"rating": ""}, 400, "1–5"),
    ({"rating": "9"}, 400, "1–5"),
    ({"signature": ""}, 400, "手写签名"),
    ({"signature": drawn_signature(strokes=False)}, 400, "签名框是空的"),
    ({"signature": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}, 400, "PNG"),
    ({"signature": "data:image/png;base64," + base64.b64encode(b"GIF89a not a png at all").decode()}, 400, "PNG"),
    ({"signature": "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()},
     400, "无法识别"),
    ({"signature": "data:image/png;base64,%%%notbase64"}, 400, "无法解析"),
    ({"signature": "data:image/png;base64," + "A" * 800_000}, 400, "太大"),
    ({"signature": drawn_signature(60, 20)}, 400, "尺寸"),
    ({"nonce": "123.forged"}, 403, "页面已过期"),
    ({"nonce": ""}, 403, "页面已过期"),
])
async def test_bad_input_is_refused_with_a_message_and_loses_nothing(
        app_client: TestClient, changes: dict[str, str], status: int, message: str) -> None:
    client = app_client
    number, path = await signoff_page(client, "cust-bad-sign")
    nonce = await form_of(client, path)
    before = await snapshot(client, number)
    values = good(nonce, **changes)
    resp = await client.post(path, data=values)
    assert resp.status == status
    text = await resp.text()
    assert message in text, text[:2000]
    assert "师傅很准时" in text, "the comment typed is kept"
    assert await snapshot(client, number) == before
    # Corrected, the same form signs.
    fixed = await client.post(path, data=good(nonce), allow_redirects=False)
    assert fixed.status == 303 and (await ticket(client, number)).status == S.CLOSED


async def test_a_cross_site_post_and_a_forged_token_change_nothing(app_client: TestClient) -> None:
    client = app_client
    number, path = await signoff_page(client, "cust-csrf")
    nonce = await form_of(client, path)
    before = await snapshot(client, number)
    resp = await client.post(path, data=good(nonce), headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    token = path.split("/")[2]
    forged = path.replace(token, token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB"))
    resp = await client.post(forged, data=good(nonce))
    assert resp.status == 404 and number not in await resp.text()
    assert (await client.get(forged)).status == 404
    assert await snapshot(client, number) == before


async def test_still_broken_from_the_page_sends_it_back_to_work(app_client: TestClient) -> None:
    client = app_client
    number, path = await signoff_page(client, "cust-broken-page")
    nonce = await form_of(client, path)
    resp = await client.post(path, data={"nonce": nonce, "action": "not_fixed", "reason": "还是有异响"},
                             allow_redirects=False)
    assert resp.status == 303
    assert (await ticket(client, number)).status == S.IN_PROGRESS
    assert "还是有异响" in "".join(await Person(client, "tech-wang").texts())
