"""A tiny driver for the playground's JSON API, used by end-to-end tests."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient


class PlaygroundUser:
    def __init__(self, client: TestClient, user: str) -> None:
        self.client = client
        self.user = user

    async def say(self, text: str) -> dict[str, Any]:
        resp = await self.client.post("/playground/api/messages", json={"user": self.user, "text": text})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def messages(self) -> list[dict[str, Any]]:
        resp = await self.client.get("/playground/api/messages", params={"user": self.user})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def texts(self) -> list[str]:
        return [m["text"] for m in await self.messages() if m.get("text")]

    async def last_text(self) -> str:
        texts = await self.texts()
        assert texts, "the bot said nothing"
        return texts[-1]

    async def cards(self, kind: str | None = None) -> list[dict[str, Any]]:
        cards = [m["card"] for m in await self.messages() if m.get("card")]
        return [c for c in cards if kind is None or c["kind"] == kind]

    async def press(self, card_id: str, action: str, values: dict[str, str] | None = None) -> dict[str, Any]:
        resp = await self.client.post("/playground/api/actions", json={
            "user": self.user, "card_id": card_id, "action": action, "values": values or {}})
        assert resp.status == 200, await resp.text()
        return await resp.json()
