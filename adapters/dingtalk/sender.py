"""ChannelSender for DingTalk over aiohttp (never the SDK's blocking `requests` calls).

- 1:1 messages: POST /v1.0/robot/oToMessages/batchSend (msgKey sampleText/sampleMarkdown/sampleActionCard*).
- Group replies (text only; a card's dtmd buttons would not reach the bot from a group, because
  there the bot only receives @mentions): POST /v1.0/robot/groupMessages/send.
- Template mode cards: POST /v1.0/card/instances/createAndDeliver, update PUT /v1.0/card/instances.
- Strong reminders: the urgent-styled message first (it always arrives), then a DING
  (POST /v1.0/robot/ding/send) as best effort: DING is only for DingTalk Pro/Exclusive editions.
- Access token: POST /v1.0/oauth2/accessToken, cached in the shared TokenCache.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from adapters.base import adapter_logger
from adapters.dingtalk import cards
from adapters.dingtalk.config import DingTalkConfig
from adapters.media import read_capped
from adapters.wire import api_session, json_body
from core.cards import Notification
from core.errors import DeliveryRejected, DeliveryRetryLater
from core.ports import DeliveryReceipt, OutboundDelivery, TokenCache

log = adapter_logger(__name__)

PLATFORM = "dingtalk"
TOKEN_PATH = "/v1.0/oauth2/accessToken"
OTO_SEND_PATH = "/v1.0/robot/oToMessages/batchSend"
GROUP_SEND_PATH = "/v1.0/robot/groupMessages/send"
CARD_CREATE_DELIVER_PATH = "/v1.0/card/instances/createAndDeliver"
CARD_UPDATE_PATH = "/v1.0/card/instances"
DING_SEND_PATH = "/v1.0/robot/ding/send"
MEDIA_DOWNLOAD_PATH = "/v1.0/robot/messageFiles/download"

# 400 answers that mean "slow down", not "never".
_RATE_LIMIT_CODES = {"toomuch.msg", "send.too.fast", "send.byToken.tooFast", "Throttling", "Throttling.Api"}
_AUTH_CODES = {"InvalidAuthentication", "invalidAuthentication", "Forbidden.AccessDenied.AccessTokenPermissionDenied"}
_TOKEN_MARGIN_S = 300  # refresh five minutes before DingTalk expires the token
_GROUP_CHAT = "2"


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class DingTalkSender:
    platform = PLATFORM

    def __init__(self, config: DingTalkConfig, tokens: TokenCache, *, session: aiohttp.ClientSession | None = None):
        self._config = config
        self._tokens = tokens
        self._session = session
        self._owns_session = session is None
        self._token_key = f"dingtalk:access_token:{config.client_id}"
        self._token_lock: asyncio.Lock | None = None

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = api_session(self._config.http_timeout_s)
            self._owns_session = True
        return self._session

    # --- ChannelSender ---

    async def send(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        notification = delivery.notification
        user_id = delivery.recipient_external_id
        if notification.card is not None:
            receipt = await self._send_card(delivery)
        elif notification.text:
            message = cards.text_message(notification.text, urgent=notification.urgent)
            group_id = self._group_of(delivery)
            if group_id and not notification.urgent:
                receipt = await self._send_group(group_id, message)
            else:
                receipt = await self._send_oto(user_id, message)
        else:
            raise DeliveryRejected("empty notification")
        if notification.urgent:
            ding_id = await self._try_ding(user_id, notification)
            if ding_id:
                receipt = DeliveryReceipt(
                    external_message_id=receipt.external_message_id,
                    card_ref={**(receipt.card_ref or {}), "open_ding_id": ding_id},
                )
        return receipt

    async def fetch_media(self, media_ref: str) -> bytes:
        body = {"downloadCode": media_ref, "robotCode": self._config.robot_code}
        answer = await self._call("POST", MEDIA_DOWNLOAD_PATH, body)
        url = answer.get("downloadUrl")
        if not url:
            raise DeliveryRejected("messageFiles/download answered without downloadUrl")
        try:
            async with self._http().get(url) as response:
                if response.status == 200:
                    return await read_capped(response)  # streamed: past the cap it stops reading
                self._raise_for(response.status, "media", await response.text(), response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryRetryLater(f"media download failed: {exc!r}") from exc
        except _ApiError as exc:
            raise DeliveryRejected(f"media download refused: {exc}") from exc
        raise AssertionError("unreachable")

    # --- messages ---

    @staticmethod
    def _group_of(delivery: OutboundDelivery) -> str | None:
        context = delivery.reply_context or {}
        if context.get("conversation_type") == _GROUP_CHAT and context.get("conversation_id"):
            return str(context["conversation_id"])
        return None

    async def _send_oto(self, user_id: str, message: cards.RobotMessage) -> DeliveryReceipt:
        body = {
            "robotCode": self._config.robot_code,
            "userIds": [user_id],
            "msgKey": message.msg_key,
            "msgParam": json.dumps(message.msg_param, ensure_ascii=False),
        }
        answer = await self._call("POST", OTO_SEND_PATH, body)
        if user_id in (answer.get("flowControlledStaffIdList") or []):
            raise DeliveryRetryLater("recipient is flow-controlled", retry_after_s=60)
        if user_id in (answer.get("invalidStaffIdList") or []):
            raise DeliveryRejected(f"invalid DingTalk user id {user_id}")
        key = answer.get("processQueryKey")
        return DeliveryReceipt(external_message_id=key, card_ref={"mode": "robot", "process_query_key": key})

    async def _send_group(self, conversation_id: str, message: cards.RobotMessage) -> DeliveryReceipt:
        body = {
            "robotCode": self._config.robot_code,
            "openConversationId": conversation_id,
            "msgKey": message.msg_key,
            "msgParam": json.dumps(message.msg_param, ensure_ascii=False),
        }
        answer = await self._call("POST", GROUP_SEND_PATH, body)
        key = answer.get("processQueryKey")
        return DeliveryReceipt(external_message_id=key, card_ref={"mode": "robot", "process_query_key": key})

    async def _send_card(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        notification = delivery.notification
        card = notification.card
        assert card is not None
        ref = delivery.card_ref or {}
        if self._config.card_template_id and ref.get("mode") != "robot":
            if notification.replaces_card_id:
                # The outTrackId is the card id, so the update needs no stored reference (it may not be
                # stored yet when the press and the original delivery race).
                return await self._update_template_card(
                    str(ref.get("out_track_id") or notification.replaces_card_id), notification
                )
            return await self._create_template_card(delivery.recipient_external_id, notification)
        # Robot messages cannot be edited: an "update" arrives as a new message showing the outcome.
        message = cards.robot_card_message(card, prefix_text=notification.text, urgent=notification.urgent)
        receipt = await self._send_oto(delivery.recipient_external_id, message)
        prompt = cards.text_reply_prompt(card)
        if prompt is not None:
            await self._send_oto(delivery.recipient_external_id, prompt)
        return DeliveryReceipt(receipt.external_message_id, {**(receipt.card_ref or {}), "card_id": card.id})

    async def _create_template_card(self, user_id: str, notification: Notification) -> DeliveryReceipt:
        card = notification.card
        assert card is not None
        params = cards.template_params(card, prefix_text=notification.text, urgent=notification.urgent)
        body = {
            "cardTemplateId": self._config.card_template_id,
            "outTrackId": card.id,  # the neutral card id comes back in callbacks as outTrackId
            "callbackType": "STREAM",
            "cardData": {"cardParamMap": params},
            "openSpaceId": f"dtv1.card//IM_ROBOT.{user_id}",
            "imRobotOpenSpaceModel": {"supportForward": False},
            "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": self._config.robot_code},
            "userIdType": 1,
        }
        answer = await self._call("POST", CARD_CREATE_DELIVER_PATH, body)
        result = answer.get("result") or {}
        for outcome in result.get("deliverResults") or []:
            if outcome.get("success") is False:
                raise DeliveryRejected(f"card not delivered: {outcome.get('errorMsg') or outcome}")
        return DeliveryReceipt(external_message_id=card.id, card_ref={"mode": "template", "out_track_id": card.id})

    async def _update_template_card(self, out_track_id: str, notification: Notification) -> DeliveryReceipt:
        card = notification.card
        assert card is not None
        body = {
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": cards.template_params(card, prefix_text=notification.text)},
            "cardUpdateOptions": {"updateCardDataByKey": True},
        }
        await self._call("PUT", CARD_UPDATE_PATH, body)
        ref = {"mode": "template", "out_track_id": out_track_id}
        return DeliveryReceipt(external_message_id=out_track_id, card_ref=ref)

    async def _try_ding(self, user_id: str, notification: Notification) -> str | None:
        """Best effort: the urgent message has already been delivered, so a refused or failed
        DING must not make the outbox send it again."""
        content = notification.text or (notification.card.title if notification.card else "") or "您有一条紧急提醒"
        if notification.ticket_number:
            content = f"[{notification.ticket_number}] {content}"
        body = {
            "robotCode": self._config.robot_code,
            "remindType": self._config.ding_remind_type,
            "receiverUserIdList": [user_id],
            "content": content[:500],
        }
        try:
            answer = await self._call("POST", DING_SEND_PATH, body)
        except (DeliveryRetryLater, DeliveryRejected) as exc:
            log.warning("dingtalk: DING not sent to %r (urgent message was delivered): %r", user_id, exc.reason)
            return None
        return answer.get("openDingId")

    # --- HTTP ---

    async def _access_token(self, *, stale: str | None = None) -> str:
        """The cached token, else a new one. `stale`: DingTalk refused that token, fetch another
        unless a concurrent caller has already replaced it (one refresh for a burst of 401s)."""
        if stale is None:
            cached = await self._tokens.get(self._token_key)
            if cached:
                return cached
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            cached = await self._tokens.get(self._token_key)
            if cached and cached != stale:
                return cached
            url = self._config.openapi_endpoint + TOKEN_PATH
            body = {"appKey": self._config.client_id, "appSecret": self._config.client_secret}
            try:
                async with self._http().post(url, json=body) as response:
                    text = await response.text()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise DeliveryRetryLater(f"access token request failed: {exc!r}") from exc
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                data = {}
            token = data.get("accessToken") if status == 200 else None
            if not token:
                raise DeliveryRetryLater(f"no access token: HTTP {status} {text[:200]}")
            ttl = max(float(data.get("expireIn") or 7200) - _TOKEN_MARGIN_S, 60.0)
            await self._tokens.set(self._token_key, token, ttl)
            return token

    async def _call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        token = await self._access_token()
        try:
            return await self._request(method, path, body, token)
        except _ApiError as exc:
            if exc.status == 401 or exc.code in _AUTH_CODES:
                # Expired or revoked token: replace it (once for concurrent callers) and try once more.
                token = await self._access_token(stale=token)
                try:
                    return await self._request(method, path, body, token)
                except _ApiError as again:
                    raise DeliveryRetryLater(f"{path}: {again}") from again
            raise DeliveryRejected(f"{path}: {exc}") from exc

    async def _request(self, method: str, path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        url = self._config.openapi_endpoint + path
        headers = {"x-acs-dingtalk-access-token": token, "Content-Type": "application/json"}
        try:
            async with self._http().request(method, url, data=json_body(body), headers=headers) as response:
                text = await response.text()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryRetryLater(f"{path}: network error {exc!r}") from exc
        if status == 200:
            try:
                data = json.loads(text) if text else {}
            except ValueError as exc:
                raise DeliveryRetryLater(f"{path}: answer is not JSON") from exc
            return data if isinstance(data, dict) else {}
        self._raise_for(status, path, text, retry_after)
        raise AssertionError("unreachable")

    @staticmethod
    def _raise_for(status: int, path: str, text: str, retry_after: str | None) -> None:
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        code = str(data.get("code") or "") if isinstance(data, dict) else ""
        message = str(data.get("message") or text[:200]) if isinstance(data, dict) else text[:200]
        delay: float | None = None
        if retry_after:
            try:
                delay = float(retry_after)
            except ValueError:
                delay = None
        if status == 429 or status >= 500 or code in _RATE_LIMIT_CODES:
            raise DeliveryRetryLater(f"{path}: HTTP {status} {code} {message}", retry_after_s=delay)
        if status == 401 or (status == 403 and code in _AUTH_CODES):
            raise _ApiError(status, code or "InvalidAuthentication", message)
        if 400 <= status < 500:
            raise _ApiError(status, code, message)
        raise DeliveryRetryLater(f"{path}: unexpected HTTP {status}")
