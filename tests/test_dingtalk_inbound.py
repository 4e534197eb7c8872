"""Translation details of DingTalk payloads (pure functions, the SDK's own models)."""

from __future__ import annotations

import pytest

from adapters.dingtalk.inbound import (
    MalformedPayload,
    card_callback_to_inbound,
    robot_message_to_inbound,
    strip_mentions,
)
from core.inbound import InboundKind
from tests.fakes.dingtalk_gateway import card_callback, robot_message


def test_strip_mentions_keeps_later_at_signs():
    assert strip_mentions("@工单助手 打印机坏了 @张三 看看", 1) == "打印机坏了 @张三 看看"
    assert strip_mentions(" 打印机坏了", 1) == "打印机坏了"


def test_unhandled_message_type_is_ignored_and_missing_id_is_malformed():
    data = robot_message(msg_id="a-1", text="x")
    data["msgtype"] = "audio"
    data.pop("text")
    assert robot_message_to_inbound(data) is None
    broken = robot_message(msg_id="", text="x")
    with pytest.raises(MalformedPayload):
        robot_message_to_inbound(broken)


def test_card_callback_key_distinguishes_resubmitted_values():
    first = card_callback_to_inbound(
        card_callback(out_track_id="c", user_id="u", params={"action": "sign", "rating": "1"}, action_ids=["sign"])
    )
    second = card_callback_to_inbound(
        card_callback(out_track_id="c", user_id="u", params={"action": "sign", "rating": "5"}, action_ids=["sign"])
    )
    assert first.event_key != second.event_key
    no_action_param = card_callback_to_inbound(
        card_callback(out_track_id="c", user_id="u", params={}, action_ids=["accept"])
    )
    assert no_action_param.action == "accept"


def test_typed_location_stands_in_for_a_location_share():
    located = robot_message_to_inbound(robot_message(msg_id="l-1", text="位置 31.2041，121.5901"))
    assert located is not None and located.kind is InboundKind.LOCATION
    assert (located.lat, located.lng) == (31.2041, 121.5901)
    plain = robot_message_to_inbound(robot_message(msg_id="l-2", text="位置在3号车间，坐标不清楚"))
    assert plain is not None and plain.kind is InboundKind.TEXT
