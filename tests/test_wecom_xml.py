"""parse_xml builds the dict with the C ElementTree parser; the code reading it was written against
xmltodict's shape, so every WeCom message kind (and odd XML) must come out exactly as xmltodict
made it, and every malformed or unsafe document must still be refused."""

from __future__ import annotations

from typing import Any

import pytest
import xmltodict

from adapters.wecom.inbound import UnsafeXml, parse_xml
from tests.fakes.wecom_server import (
    SAMPLE_AES_KEY,
    CallbackSigner,
    event_xml,
    image_xml,
    location_xml,
    template_card_event_xml,
    text_xml,
)


def as_xmltodict_did(data: str) -> dict[str, Any]:
    doc = xmltodict.parse(data.encode(), force_list=("SelectedItem", "OptionId"), disable_entities=True)
    return doc["xml"]


SHAPES = [
    text_xml("zhangsan", "底盘有异响 <b>&amp; ]]&gt; 尾", msg_id=1, created=2),
    image_xml("lisi", "MEDIA_1", msg_id=3, created=4),
    location_xml("lisi", 31.2, 121.5, msg_id=5, created=6, label="一号车间"),
    event_xml("wangwu", "enter_agent", created=7),
    template_card_event_xml("u", task_id="t1", event_key="accept", created=8, response_code="rc"),
    template_card_event_xml("u", task_id="t1", event_key="submit", created=8, response_code="rc",
                            selected=[("q1", ["a"]), ("q2", ["b", "c"])]),
    template_card_event_xml("u", task_id="t1", event_key="submit", created=8, response_code="rc",
                            selected=[("q1", [])]),
    "<xml><A>1</A><A>2</A><A>3</A><B/><C>  </C><D a='1'>t</D><E a='2'/><F>x<G>y</G>z</F></xml>",
    "<xml>\n  <A>1</A>\n  <B><C>2</C><C>3</C></B>\n</xml>",
    "<xml><OptionId>1</OptionId><SelectedItem/></xml>",
    "<xml><A>&#20013;&lt;</A><A><![CDATA[ a ]]></A><A><B>1</B></A></xml>",
    '<?xml version="1.0" encoding="utf-8"?><xml><A>中</A></xml>',
]


@pytest.mark.parametrize("data", SHAPES)
def test_every_shape_comes_out_as_xmltodict_made_it(data: str) -> None:
    assert parse_xml(data) == as_xmltodict_did(data)
    assert parse_xml(data.encode()) == as_xmltodict_did(data)


def test_the_encrypted_envelope_as_wecom_posts_it() -> None:
    _, body = CallbackSigner("token", SAMPLE_AES_KEY, "corp").post(text_xml("u", "hi", msg_id=1, created=2))
    assert parse_xml(body) == as_xmltodict_did(body.decode())
    assert set(parse_xml(body)) == {"ToUserName", "AgentID", "Encrypt"}


@pytest.mark.parametrize("data", ["<xml><A>1</A>", "", "<xml><A>&foo;</A></xml>", "not xml", "<xml/>",
                                  "<xml>only text</xml>", "<other><A>1</A></other>"])
def test_malformed_or_rootless_xml_is_refused(data: str) -> None:
    with pytest.raises(ValueError):
        parse_xml(data)


@pytest.mark.parametrize("data", [
    '<!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><A>&a;</A></xml>',
    '<!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml><A>1</A></xml>',
    '<?xml version="1.0"?><! ENTITY x "y"><xml/>',
])
def test_dtds_and_entity_declarations_are_refused(data: str) -> None:
    with pytest.raises(UnsafeXml):
        parse_xml(data)
