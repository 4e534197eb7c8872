"""Shared by the SMS and report page tests (with the fixture `sms_fake` of tests/conftest.py, the fake
provider): settings pointing an SDK at the fake provider, the real app with a store, and a multipart body
builder (photos as a phone sends them)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import FormData
from PIL import Image

from bot.runtime import Runtime
from bot.settings import Settings
from core.commands import ReportFault
from core.masterdata.model import StoreRecord
from core.model import Person, Role
from core.ports import Clock
from core.service import NewActor
from tests.conftest import make_settings
from tests.fakes.sms_provider import FakeSmsProvider

STORE = StoreRecord("S01", "浦东一店", "上海市浦东新区世纪大道 100 号", 31.2304, 121.5200, phone="021-55550000")
CLOSED_STORE = StoreRecord("S99", "已关闭门店", "上海市", 31.0, 121.0, active=False)


def sms_settings(database_url: str, tmp_path: Path, fake: FakeSmsProvider, provider: str = "aliyun",
                 **overrides: Any) -> Settings:
    values: dict[str, Any] = {"sms_provider": provider, "sms_sign_name": fake.sign_name,
                              "sms_endpoint": fake.base_url, "load_demo": "off"}
    if provider == "aliyun":
        values.update(aliyun_access_key_id="LTAI-test-id", aliyun_access_key_secret="aliyun-test-secret",
                      sms_template_code_verify="SMS_100001", sms_template_code_notice="SMS_100002")
    else:
        values.update(tencent_secret_id="AKID-test-id", tencent_secret_key="tencent-test-secret",
                      tencent_sms_sdk_app_id=fake.sdk_app_id, sms_template_code_verify="100001",
                      sms_template_code_notice="100002")
    values.update(overrides)
    return make_settings(database_url, tmp_path, **values)


async def add_stores(runtime: Runtime, *stores: StoreRecord) -> None:
    async with runtime.uow() as uow:
        md = uow.masterdata()
        for store in stores or (STORE, CLOSED_STORE):
            await md.upsert_store(store)
        await uow.commit()


def jpeg(width: int = 320, height: int = 240, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def report_form(fields: dict[str, str], photos: list[tuple[str, bytes]] = (), *,  # type: ignore[assignment]
                kept: list[str] = ()) -> FormData:  # type: ignore[assignment]
    form = FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    for token in kept:
        form.add_field("kept", token)
    for filename, data in photos:
        form.add_field("photo", data, filename=filename, content_type="image/jpeg")
    if not photos:  # a browser sends the empty file input too
        form.add_field("photo", b"", filename="", content_type="application/octet-stream")
    return form


@asynccontextmanager
async def sms_runtime(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """A runtime on a migrated database, started without background loops: a test runs the outbox
    dispatcher itself (`runtime.dispatcher.run_once()`)."""
    runtime = Runtime(settings, clock=clock)
    await runtime.prepare_database()
    await runtime.start(background=False)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def sms_customer(runtime: Runtime, phone: str, text: str = "刹车时底盘有异响") -> tuple[Person, str]:
    """A customer reached by SMS (as the report page makes one) and their new ticket's number."""
    person = Person(id=f"c-{phone}", name=f"客户{phone[-4:]}", role=Role.CUSTOMER, phone=phone,
                    preferred_channel="sms")
    async with runtime.lookup_uow() as uow:
        known = await uow.get_person(person.id) is not None
    ticket = await runtime.service.handle(ReportFault(text, new_problem=True), person,
                                          new_actor=None if known else NewActor({"sms": phone}))
    return person, ticket.number
