"""DingTalk outbound over aiohttp against the fake OpenAPI (recorded requests, injected failures)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from adapters.dingtalk import DingTalkConfig, DingTalkSender
from adapters.dingtalk.commands import parse_command
from core.cards import ActionStyle, Card, CardAction, CardField, CardKind, FieldKind, FieldOption, Notification
from core.errors import DeliveryRejected, DeliveryRetryLater
from core.ports import OutboundDelivery
from tests.fakes.dingtalk_gateway import FakeDingTalkGateway
from tests.test_dingtalk_stream import MemoryTokens

OTO = "/v1.0/robot/oToMessages/batchSend"
GROUP = "/v1.0/robot/groupMessages/send"
TOKEN = "/v1.0/oauth2/accessToken"
DING = "/v1.0/robot/ding/send"
CREATE = "/v1.0/card/instances/createAndDeliver"
UPDATE = "/v1.0/card/instances"


@pytest.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDingTalkGateway]:
    fake = FakeDingTalkGateway()
    monkeypatch.setenv("DINGTALK_OPENAPI_ENDPOINT", await fake.start())
    yield fake
    await fake.close()


@pytest.fixture
def tokens() -> MemoryTokens:
    return MemoryTokens()


@pytest.fixture
async def sender(gateway: FakeDingTalkGateway, tokens: MemoryTokens) -> AsyncIterator[DingTalkSender]:
    instance = DingTalkSender(DingTalkConfig(client_id="ding-app", client_secret="s3cret"), tokens)
    yield instance
    await instance.close()


@pytest.fixture
async def template_sender(gateway: FakeDingTalkGateway, tokens: MemoryTokens) -> AsyncIterator[DingTalkSender]:
    config = DingTalkConfig(client_id="ding-app", client_secret="s3cret", card_template_id="tpl-1.schema")
    instance = DingTalkSender(config, tokens)
    yield instance
    await instance.close()


def offer_card(**changes: object) -> Card:
    card = Card(
        id="card-offer-1",
        kind=CardKind.OFFER,
        title="新工单待接单",
        ticket_number="WO-2024-0001",
        facts=(("设备", "3号线包装机"), ("优先级", "紧急")),
        body="卡料，停机中",
        actions=(CardAction("accept", "接单", ActionStyle.PRIMARY), CardAction("decline", "拒单", ActionStyle.DANGER)),
    )
    return Card(**{**{f: getattr(card, f) for f in card.__dataclass_fields__}, **changes})  # type: ignore[arg-type]


def signoff_card() -> Card:
    return Card(
        id="card-sign-1",
        kind=CardKind.SIGNOFF,
        title="请确认维修完成",
        ticket_number="WO-2024-0001",
        fields=(
            CardField("cause_told", "已告知故障原因", FieldKind.CHECKBOX, required=True),
            CardField("parts_confirmed", "配件更换已确认", FieldKind.CHECKBOX, required=True),
            CardField(
                "rating",
                "服务评分",
                FieldKind.SELECT,
                tuple(FieldOption(str(i), f"{i}分") for i in range(5, 0, -1)),
                required=True,
            ),
        ),
        actions=(CardAction("sign", "确认签收", ActionStyle.PRIMARY),),
    )


def delivery(notification: Notification, **kwargs: object) -> OutboundDelivery:
    return OutboundDelivery(
        outbox_id=1, platform="dingtalk", recipient_external_id="user-1", notification=notification, **kwargs
    )  # type: ignore[arg-type]


async def test_text_is_a_1to1_sample_text_and_token_is_cached(
    sender: DingTalkSender, gateway: FakeDingTalkGateway, tokens: MemoryTokens
):
    receipt = await sender.send(delivery(Notification(recipient_id="p1", text="您的工单已受理")))
    await sender.send(delivery(Notification(recipient_id="p1", text="第二条")))
    calls = gateway.calls(OTO)
    assert len(calls) == 2
    first = calls[0].body
    assert first["robotCode"] == "ding-app"  # robot code defaults to the AppKey
    assert first["userIds"] == ["user-1"]
    assert first["msgKey"] == "sampleText"
    assert json.loads(first["msgParam"]) == {"content": "您的工单已受理"}
    assert calls[0].headers["x-acs-dingtalk-access-token"].startswith("tok-")
    assert len(gateway.calls(TOKEN)) == 1  # cached
    assert gateway.calls(TOKEN)[0].body == {"appKey": "ding-app", "appSecret": "s3cret"}
    assert list(tokens.values.values()) == [calls[0].headers["x-acs-dingtalk-access-token"]]
    assert receipt.external_message_id and receipt.external_message_id.startswith("pqk-")


async def test_reply_to_group_message_goes_to_the_group(sender: DingTalkSender, gateway: FakeDingTalkGateway):
    context = {"conversation_type": "2", "conversation_id": "cid-group"}
    await sender.send(delivery(Notification(recipient_id="p1", text="已收到，正在派单"), reply_context=context))
    (call,) = gateway.calls(GROUP)
    assert call.body["openConversationId"] == "cid-group"
    assert call.body["msgKey"] == "sampleText"
    assert gateway.calls(OTO) == []


async def test_offer_card_is_an_action_card_whose_buttons_send_commands(
    sender: DingTalkSender, gateway: FakeDingTalkGateway
):
    await sender.send(delivery(Notification(recipient_id="p1", card=offer_card())))
    (call,) = gateway.calls(OTO)
    assert call.body["msgKey"] == "sampleActionCard2"
    param = json.loads(call.body["msgParam"])
    assert "3号线包装机" in param["text"] and "WO-2024-0001" in param["text"]
    assert param["actionTitle1"] == "接单" and param["actionTitle2"].endswith("拒单")
    url = param["actionURL1"]
    assert url.startswith("dtmd://dingtalkclient/sendMessage?content=")
    from urllib.parse import unquote

    command = parse_command(unquote(url.split("content=", 1)[1]))
    assert command is not None and (command.card_id, command.action) == ("card-offer-1", "accept")


async def test_signoff_form_buttons_submit_confirmations_and_rating(
    sender: DingTalkSender, gateway: FakeDingTalkGateway
):
    await sender.send(delivery(Notification(recipient_id="p1", card=signoff_card())))
    (call,) = gateway.calls(OTO)
    assert call.body["msgKey"] == "sampleActionCard5"
    param = json.loads(call.body["msgParam"])
    assert "已告知故障原因" in param["text"] and "配件更换已确认" in param["text"]
    from urllib.parse import unquote

    command = parse_command(unquote(param["actionURL1"].split("content=", 1)[1]))
    assert command is not None
    assert command.action == "sign"
    assert command.values == {"cause_told": "true", "parts_confirmed": "true", "rating": "5"}


async def test_closed_card_update_is_a_new_markdown_without_buttons(
    sender: DingTalkSender, gateway: FakeDingTalkGateway
):
    closed = offer_card(closed_note="张工已接单")
    await sender.send(delivery(Notification(recipient_id="p1", card=closed, replaces_card_id="card-offer-1")))
    (call,) = gateway.calls(OTO)
    assert call.body["msgKey"] == "sampleMarkdown"
    param = json.loads(call.body["msgParam"])
    assert "张工已接单" in param["text"] and "dtmd://" not in param["text"]


async def test_template_mode_creates_and_updates_card_instances(
    template_sender: DingTalkSender, gateway: FakeDingTalkGateway
):
    receipt = await template_sender.send(delivery(Notification(recipient_id="p1", card=offer_card())))
    (create,) = gateway.calls(CREATE)
    assert create.body["cardTemplateId"] == "tpl-1.schema"
    assert create.body["outTrackId"] == "card-offer-1"
    assert create.body["callbackType"] == "STREAM"
    assert create.body["openSpaceId"] == "dtv1.card//IM_ROBOT.user-1"
    params = create.body["cardData"]["cardParamMap"]
    assert all(isinstance(v, str) for v in params.values())
    assert [a["label"] for a in json.loads(params["actions"])] == ["接单", "拒单"]
    assert receipt.card_ref == {"mode": "template", "out_track_id": "card-offer-1"}

    closed = Notification(recipient_id="p1", card=offer_card(closed_note="已接单"), replaces_card_id="card-offer-1")
    await template_sender.send(delivery(closed, card_ref=receipt.card_ref))
    (update,) = gateway.calls(UPDATE)
    assert update.method == "PUT"
    assert update.body["outTrackId"] == "card-offer-1"
    update_params = update.body["cardData"]["cardParamMap"]
    assert update_params["closed"] == "true" and update_params["closed_note"] == "已接单"
    assert json.loads(update_params["actions"]) == []


async def test_urgent_reminder_sends_styled_card_then_ding(sender: DingTalkSender, gateway: FakeDingTalkGateway):
    card = Card(
        id="rem-1", kind=CardKind.REMINDER, title="响应即将超时", urgent=True, actions=(CardAction("ack", "知道了"),)
    )
    receipt = await sender.send(delivery(Notification(recipient_id="p1", card=card, urgent=True, ticket_number="WO-1")))
    (message,) = gateway.calls(OTO)
    param = json.loads(message.body["msgParam"])
    assert param["title"].startswith("【紧急】")
    (ding,) = gateway.calls(DING)
    assert ding.body == {
        "robotCode": "ding-app",
        "remindType": 1,
        "receiverUserIdList": ["user-1"],
        "content": "[WO-1] 响应即将超时",
    }
    assert receipt.card_ref is not None and receipt.card_ref["open_ding_id"].startswith("ding-")


async def test_ding_unavailable_falls_back_to_the_urgent_card(sender: DingTalkSender, gateway: FakeDingTalkGateway):
    gateway.ding_available = False  # DING needs DingTalk Pro: 403 on other editions
    receipt = await sender.send(delivery(Notification(recipient_id="p1", text="设备停机超过30分钟", urgent=True)))
    (message,) = gateway.calls(OTO)
    assert message.body["msgKey"] == "sampleMarkdown"
    assert "紧急" in json.loads(message.body["msgParam"])["text"]
    assert len(gateway.calls(DING)) == 1
    assert receipt.external_message_id


@pytest.mark.parametrize("status", [500, 502, 429])
async def test_server_errors_and_rate_limits_retry_later(
    sender: DingTalkSender, gateway: FakeDingTalkGateway, status: int
):
    gateway.fail(OTO, status, headers={"Retry-After": "7"} if status == 429 else None)
    with pytest.raises(DeliveryRetryLater) as info:
        await sender.send(delivery(Notification(recipient_id="p1", text="hi")))
    if status == 429:
        assert info.value.retry_after_s == 7
    await sender.send(delivery(Notification(recipient_id="p1", text="hi")))  # the retry succeeds
    assert len(gateway.calls(OTO)) == 2


async def test_rate_limit_error_code_retries_later(sender: DingTalkSender, gateway: FakeDingTalkGateway):
    gateway.fail(OTO, 400, body={"code": "send.too.fast", "message": "slow down"})
    with pytest.raises(DeliveryRetryLater):
        await sender.send(delivery(Notification(recipient_id="p1", text="hi")))


async def test_invalid_request_is_rejected(sender: DingTalkSender, gateway: FakeDingTalkGateway):
    gateway.fail(OTO, 400, body={"code": "invalidParameter.userIds", "message": "bad user"})
    with pytest.raises(DeliveryRejected):
        await sender.send(delivery(Notification(recipient_id="p1", text="hi")))


async def test_token_failure_retries_later_and_revoked_token_is_refreshed(
    sender: DingTalkSender, gateway: FakeDingTalkGateway
):
    gateway.token_failures = 1
    with pytest.raises(DeliveryRetryLater):
        await sender.send(delivery(Notification(recipient_id="p1", text="hi")))
    await sender.send(delivery(Notification(recipient_id="p1", text="hi")))
    gateway.revoke_tokens()
    await sender.send(delivery(Notification(recipient_id="p1", text="hi again")))
    assert len(gateway.calls(TOKEN)) == 3
    statuses = [c.headers["x-acs-dingtalk-access-token"] for c in gateway.calls(OTO)]
    assert statuses[-1] != statuses[-2]  # new token after the 401


async def test_network_error_retries_later(gateway: FakeDingTalkGateway, tokens: MemoryTokens):
    config = DingTalkConfig(client_id="a", client_secret="b", openapi_endpoint="http://127.0.0.1:9", http_timeout_s=2)
    instance = DingTalkSender(config, tokens)
    try:
        with pytest.raises(DeliveryRetryLater):
            await instance.send(delivery(Notification(recipient_id="p1", text="hi")))
    finally:
        await instance.close()


async def test_fetch_media_downloads_by_download_code(sender: DingTalkSender, gateway: FakeDingTalkGateway):
    gateway.files["dl-1"] = b"\xff\xd8jpeg-bytes"
    assert await sender.fetch_media("dl-1") == b"\xff\xd8jpeg-bytes"
    (call,) = gateway.calls("/v1.0/robot/messageFiles/download")
    assert call.body == {"downloadCode": "dl-1", "robotCode": "ding-app"}
    with pytest.raises(DeliveryRejected):
        await sender.fetch_media("unknown")


async def test_card_with_a_text_field_is_followed_by_a_copyable_prompt(
    sender: DingTalkSender, gateway: FakeDingTalkGateway
):
    card = Card(
        id="rca-1",
        kind=CardKind.TASK,
        title="超时根因分析",
        fields=(CardField("reason", "超时根因", FieldKind.TEXT, required=True),),
        actions=(CardAction("submit", "提交", ActionStyle.PRIMARY),),
    )
    await sender.send(delivery(Notification(recipient_id="p1", card=card)))
    card_call, prompt_call = gateway.calls(OTO)
    assert card_call.body["msgKey"] == "sampleActionCard"
    prompt = json.loads(prompt_call.body["msgParam"])["content"]
    command = parse_command(prompt + "夜班无人值守")
    assert command is not None and command.values == {"reason": "夜班无人值守"}
    # The closed card (after the press) comes without a prompt.
    closed = Notification(recipient_id="p1", card=replace(card, closed_note="已提交"), replaces_card_id="rca-1")
    await sender.send(delivery(closed))
    assert len(gateway.calls(OTO)) == 3


async def test_a_burst_of_401s_refreshes_the_token_once(sender: DingTalkSender, gateway: FakeDingTalkGateway):
    import asyncio

    await sender.send(delivery(Notification(recipient_id="p1", text="预热")))
    gateway.revoke_tokens()
    await asyncio.gather(*(sender.send(delivery(Notification(recipient_id="p1", text=f"第{i}条"))) for i in range(5)))
    assert len(gateway.calls(TOKEN)) == 2  # the first token, then one refresh for all five 401s
    assert len(gateway.delivered) == 6
    assert len({c.headers["x-acs-dingtalk-access-token"] for c in gateway.delivered[1:]}) == 1


async def test_template_update_needs_no_stored_reference_but_robot_cards_stay_robot(
    template_sender: DingTalkSender, gateway: FakeDingTalkGateway
):
    closed = Notification(recipient_id="p1", card=offer_card(closed_note="已接单"), replaces_card_id="card-offer-1")
    await template_sender.send(delivery(closed))  # no card_ref: the outTrackId is the card id
    (update,) = gateway.calls(UPDATE)
    assert update.body["outTrackId"] == "card-offer-1"
    # A card first sent as a robot message (before template mode was configured) is updated as one.
    await template_sender.send(delivery(closed, card_ref={"mode": "robot", "card_id": "card-offer-1"}))
    assert len(gateway.calls(UPDATE)) == 1 and len(gateway.calls(OTO)) == 1
    assert gateway.calls(CREATE) == []
