"""/wecom/callback over real HTTP on loopback, with callbacks sealed by wechatpy's own crypto."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.wecom import WeComConfig, create_wecom_adapter
from adapters.wecom.task_id import encode_task_id
from core.inbound import InboundKind, InboundMessage

try:
    from tests.fakes.wecom_server import (
        SAMPLE_AES_KEY,
        SAMPLE_CORP_ID,
        SAMPLE_TOKEN,
        SAMPLE_VERIFY_ANSWER,
        SAMPLE_VERIFY_QUERY,
        CallbackSigner,
        event_xml,
        image_xml,
        location_xml,
        template_card_event_xml,
        text_xml,
    )
except ModuleNotFoundError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from fakes.wecom_server import (  # type: ignore[no-redef]
        SAMPLE_AES_KEY,
        SAMPLE_CORP_ID,
        SAMPLE_TOKEN,
        SAMPLE_VERIFY_ANSWER,
        SAMPLE_VERIFY_QUERY,
        CallbackSigner,
        event_xml,
        image_xml,
        location_xml,
        template_card_event_xml,
        text_xml,
    )

PATH = "/wecom/callback"


class MemoryInbox:
    """InboxPort fake: unique per (platform, event_key), like the real inbox table."""

    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self._keys: set[tuple[str, str]] = set()

    async def accept(self, message: InboundMessage) -> bool:
        key = (message.platform, message.event_key)
        if key in self._keys:
            return False
        self._keys.add(key)
        self.messages.append(message)
        return True


class MemoryTokens:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


CONFIG = WeComConfig(
    corp_id=SAMPLE_CORP_ID,
    agent_id="1000002",
    secret="s",
    token=SAMPLE_TOKEN,
    encoding_aes_key=SAMPLE_AES_KEY,
    api_base="http://127.0.0.1:9/cgi-bin/",
    max_body_bytes=16 * 1024,
)
SIGNER = CallbackSigner(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inbox() -> MemoryInbox:
    return MemoryInbox()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(inbox: MemoryInbox, clock: Clock) -> AsyncIterator[TestClient]:
    adapter = create_wecom_adapter(CONFIG, inbox, MemoryTokens(), clock=clock)
    app = web.Application()
    adapter.add_routes(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    await adapter.stop()


async def post(client: TestClient, inner_xml: str, **kw: Any) -> tuple[int, str]:
    query, body = SIGNER.post(inner_xml, **kw)
    resp = await client.post(PATH, params=query, data=body, headers={"Content-Type": "text/xml"})
    return resp.status, await resp.text()


# --- URL verification ------------------------------------------------------------------


async def test_official_sample_vector_url_verification(client: TestClient, clock: Clock) -> None:
    clock.now = int(SAMPLE_VERIFY_QUERY["timestamp"]) + 3  # the sample is from 2014
    resp = await client.get(PATH, params=SAMPLE_VERIFY_QUERY)
    assert resp.status == 200
    assert await resp.read() == SAMPLE_VERIFY_ANSWER.encode()  # raw: no quotes, no newline


async def test_official_sample_vector_is_stale_today(client: TestClient) -> None:
    resp = await client.get(PATH, params=SAMPLE_VERIFY_QUERY)
    assert resp.status == 403


async def test_signed_url_verification_roundtrip(client: TestClient) -> None:
    resp = await client.get(PATH, params=SIGNER.verify("8231470923740"))
    assert (resp.status, await resp.text()) == (200, "8231470923740")


async def test_url_verification_with_wrong_signature(client: TestClient) -> None:
    query = SIGNER.verify("42")
    query["msg_signature"] = "0" * 40
    resp = await client.get(PATH, params=query)
    assert resp.status == 403


# --- every inbound kind ----------------------------------------------------------------


async def test_text_message(client: TestClient, inbox: MemoryInbox) -> None:
    status, body = await post(
        client, text_xml("zhangsan", "3号线注塑机报警 E21", msg_id=7001, created=int(time.time()))
    )
    assert (status, body) == (200, "")  # empty 200: received, no passive reply
    (msg,) = inbox.messages
    assert msg.platform == "wecom"
    assert msg.kind is InboundKind.TEXT
    assert msg.sender == "zhangsan"
    assert msg.text == "3号线注塑机报警 E21"
    assert msg.event_key == "msg:7001"


async def test_image_message_keeps_media_id(client: TestClient, inbox: MemoryInbox) -> None:
    await post(client, image_xml("lisi", "MEDIA_abc", msg_id=7002, created=int(time.time())))
    (msg,) = inbox.messages
    assert (msg.kind, msg.media_ref, msg.image_b64) == (InboundKind.IMAGE, "MEDIA_abc", None)


async def test_location_message(client: TestClient, inbox: MemoryInbox) -> None:
    await post(client, location_xml("lisi", 31.2304, 121.4737, msg_id=7003, created=int(time.time()), label="二号厂房"))
    (msg,) = inbox.messages
    assert msg.kind is InboundKind.LOCATION
    assert (msg.lat, msg.lng, msg.text) == (31.2304, 121.4737, "二号厂房")


async def test_enter_agent_event(client: TestClient, inbox: MemoryInbox) -> None:
    now = int(time.time())
    await post(client, event_xml("wangwu", "enter_agent", created=now))
    (msg,) = inbox.messages
    assert msg.kind is InboundKind.ENTER
    assert msg.event_key == f"evt:wangwu:{now}:enter_agent"


async def test_button_press_template_card_event(client: TestClient, inbox: MemoryInbox) -> None:
    now = int(time.time())
    task_id = encode_task_id("offer:T-0001/3", 17)
    xml = template_card_event_xml("zhangsan", task_id=task_id, event_key="accept", created=now, response_code="RC-1")
    assert (await post(client, xml))[0] == 200
    (msg,) = inbox.messages
    assert msg.kind is InboundKind.CARD_ACTION
    assert msg.card_id == "offer:T-0001/3"
    assert msg.action == "accept"
    assert msg.values == {}
    assert msg.reply_context == {
        "task_id": task_id,
        "card_type": "button_interaction",
        "response_code": "RC-1",
        "response_code_at": now,
    }
    assert msg.event_key == f"card:zhangsan:{now}:{task_id}:accept"


async def test_form_submission_with_one_selected_item(client: TestClient, inbox: MemoryInbox) -> None:
    xml = template_card_event_xml(
        "zhangsan",
        task_id=encode_task_id("signoff-1", 5),
        event_key="submit",
        created=int(time.time()),
        response_code="RC-2",
        card_type="multiple_interaction",
        selected=[("rating", ["4"])],  # one item: xmltodict would give a dict, not a list
    )
    await post(client, xml)
    (msg,) = inbox.messages
    assert msg.values == {"rating": "4"}


async def test_form_submission_with_several_items_and_unset_choice(client: TestClient, inbox: MemoryInbox) -> None:
    xml = template_card_event_xml(
        "zhangsan",
        task_id=encode_task_id("signoff-1", 5),
        event_key="submit",
        created=int(time.time()),
        response_code="RC-3",
        card_type="multiple_interaction",
        selected=[("cause_told", ["true"]), ("parts_ok", ["ticketbot-unset"]), ("rating", ["5"])],
    )
    await post(client, xml)
    (msg,) = inbox.messages
    # "请选择" comes back as "" so the service can refuse it with a clear message.
    assert msg.values == {"cause_told": "true", "parts_ok": "", "rating": "5"}


async def test_unknown_message_type_is_acknowledged_and_ignored(client: TestClient, inbox: MemoryInbox) -> None:
    xml = (
        "<xml><ToUserName>corp</ToUserName><FromUserName>lisi</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>voice</MsgType><MediaId>v1</MediaId><Format>amr</Format><MsgId>9</MsgId>"
        "<AgentID>1000002</AgentID></xml>"
    )
    assert await post(client, xml) == (200, "")
    assert inbox.messages == []


async def test_duplicate_msgid_is_stored_once(client: TestClient, inbox: MemoryInbox) -> None:
    xml = text_xml("zhangsan", "空压机漏气", msg_id=8001, created=int(time.time()))
    for _ in range(3):  # WeCom retries up to 3 times when the answer is slow
        assert (await post(client, xml))[0] == 200
    assert len(inbox.messages) == 1


# --- bad input: nothing stored ---------------------------------------------------------


async def test_wrong_signature(client: TestClient, inbox: MemoryInbox) -> None:
    query, body = SIGNER.post(text_xml("zhangsan", "x", msg_id=1, created=int(time.time())))
    query["msg_signature"] = "f" * 40
    resp = await client.post(PATH, params=query, data=body)
    assert resp.status == 403
    assert inbox.messages == []


async def test_wrong_corp_id(client: TestClient, inbox: MemoryInbox) -> None:
    other = CallbackSigner(SAMPLE_TOKEN, SAMPLE_AES_KEY, "wwOtherCorp")
    query, body = other.post(text_xml("zhangsan", "x", msg_id=2, created=int(time.time())))
    resp = await client.post(PATH, params=query, data=body)
    assert resp.status == 403
    assert inbox.messages == []


async def test_stale_timestamp(client: TestClient, inbox: MemoryInbox) -> None:
    old = int(time.time()) - 3600
    status, _ = await post(client, text_xml("zhangsan", "x", msg_id=3, created=old), timestamp=old)
    assert status == 403
    assert inbox.messages == []


async def test_future_timestamp(client: TestClient, inbox: MemoryInbox) -> None:
    future = int(time.time()) + 3600
    status, _ = await post(client, text_xml("zhangsan", "x", msg_id=3, created=future), timestamp=future)
    assert status == 403


async def test_missing_query_parameters(client: TestClient) -> None:
    resp = await client.post(PATH, data=b"<xml/>")
    assert resp.status == 400


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<xml><Encrypt>&lol3;</Encrypt></xml>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Encrypt>&xxe;</Encrypt></xml>'
)


@pytest.mark.parametrize("envelope", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
async def test_entity_attacks_in_the_envelope(client: TestClient, inbox: MemoryInbox, envelope: str) -> None:
    query, _ = SIGNER.post("<xml/>")
    resp = await client.post(PATH, params=query, data=envelope.encode())
    assert resp.status == 400
    assert inbox.messages == []


@pytest.mark.parametrize("inner", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
async def test_entity_attacks_inside_a_validly_signed_message(
    client: TestClient, inbox: MemoryInbox, inner: str
) -> None:
    # A leaked key must still not let XML entities through: the decrypted XML is checked too.
    status, _ = await post(client, inner)
    assert status == 400
    assert inbox.messages == []


async def test_oversized_body(client: TestClient, inbox: MemoryInbox) -> None:
    query, _ = SIGNER.post("<xml/>")
    resp = await client.post(PATH, params=query, data=b"<xml>" + b"A" * (CONFIG.max_body_bytes + 1) + b"</xml>")
    assert resp.status == 413
    assert inbox.messages == []


async def test_oversized_chunked_body_without_length(client: TestClient) -> None:
    query, _ = SIGNER.post("<xml/>")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"B" * 1024

    resp = await client.post(PATH, params=query, data=chunks())
    assert resp.status == 413


async def test_garbage_ciphertext(client: TestClient, inbox: MemoryInbox) -> None:
    from adapters.wecom.callback import signature

    ts, nonce, enc = str(int(time.time())), "123", "bm90IGEgcmVhbCBjaXBoZXJ0ZXh0"
    query = {"msg_signature": signature(SAMPLE_TOKEN, ts, nonce, enc), "timestamp": ts, "nonce": nonce}
    resp = await client.post(PATH, params=query, data=f"<xml><Encrypt>{enc}</Encrypt></xml>".encode())
    assert resp.status in (400, 403)
    assert inbox.messages == []


async def test_other_agent_is_refused(client: TestClient, inbox: MemoryInbox) -> None:
    xml = text_xml("zhangsan", "x", msg_id=4, created=int(time.time()), agent_id=999)
    status, _ = await post(client, xml)
    assert status == 403
    assert inbox.messages == []
