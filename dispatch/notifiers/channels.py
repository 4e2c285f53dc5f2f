"""The channels and their wire formats. Each send is one HTTP request and says how it went.

- webhook: JSON, signed ``X-Dispatch-Signature: sha256=<hex HMAC-SHA256 of the body>``.
- WeCom (企业微信) group robot: ``{"msgtype": "text", "text": {"content": ...}}``, with
  ``mentioned_mobile_list`` to @ the leader; it answers ``{"errcode": 0}`` on success (and
  HTTP 200 with another errcode on failure).
- DingTalk (钉钉) group robot: the same idea with ``at.atMobiles``; with 加签 the query string
  carries ``timestamp`` (ms) and ``sign`` = Base64(HMAC-SHA256(key=secret, "timestamp\\nsecret")).
- SMS: any gateway behind the ``SmsGateway`` interface; ``HttpSmsGateway`` posts JSON with
  HTTP Basic credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

from dispatch.config import Settings
from dispatch.incidents.models import CATEGORY_LABELS
from dispatch.observability.logs import mask_numbers
from dispatch.schemas import show_time

SIGNATURE_HEADER = "X-Dispatch-Signature"
EVENT_HEADER = "X-Dispatch-Event"
DELIVERY_HEADER = "X-Dispatch-Delivery"
EVENT = "alert.unacknowledged"

TIER_ZH = {1: "应急联防队", 2: "巡逻警力", 3: "处突警力"}
# As much of the operator's note (调度员附言) of a team added by hand as the text quotes: the
# gist for a leader on the way (a message of about 70 characters is one SMS, and the text is
# already longer); the whole note is on his page and in the webhook's ``dispatch.note``.
NOTE_CHARS = 40


@dataclass(frozen=True)
class Notice:
    """Everything a channel may say about one unacknowledged alert to one leader."""

    notification_id: str
    channel: str
    attempt: int
    incident_id: str
    category: str
    reported_at: datetime
    lon: float
    lat: float
    dispatch_id: str
    team_id: str
    team_name: str
    tier: int
    distance_m: float
    alerted_at: datetime
    leader_id: str
    leader_name: str
    phone: str | None
    # Since the dispatch's alert, by the server's clock, when this attempt began: a retry
    # tells the leader how long the alert has waited, not the check's first delay again.
    unacknowledged_for_s: float
    # The operator's note of a team he added by hand (加派), None without one.
    note: str | None = None

    def text(self) -> str:
        category = CATEGORY_LABELS.get(self.category, self.category)
        text = (
            f"【警情派警】{self.team_name}（{TIER_ZH.get(self.tier, '')}）队长{self.leader_name}："
            f"{show_time(self.reported_at)[11:19]} 报{category}警情，"
            f"距离约{self.distance_m:.0f}米，"
            f"告警{self.unacknowledged_for_s:.0f}秒未确认接收，请立即打开派警页面接警。"
            f"警情编号 {self.incident_id[:8]}"
        )
        if self.note is not None:
            text += f"。调度员附言：{brief(self.note)}"
        return text

    def document(self) -> dict[str, Any]:
        return {
            "event": EVENT,
            "notification_id": self.notification_id,
            "attempt": self.attempt,
            "unacknowledged_for_s": self.unacknowledged_for_s,
            "text": self.text(),
            "incident": {
                "id": self.incident_id,
                "category": self.category,
                "reported_at": show_time(self.reported_at),
                "location": {"lon": self.lon, "lat": self.lat, "crs": "wgs84"},
            },
            "dispatch": {
                "id": self.dispatch_id,
                "team_id": self.team_id,
                "team_name": self.team_name,
                "tier": self.tier,
                "distance_m": self.distance_m,
                "alerted_at": show_time(self.alerted_at),
                "note": self.note,
            },
            "leader": {"id": self.leader_id, "name": self.leader_name, "phone": self.phone},
        }


def brief(note: str) -> str:
    """A note on one line (its line breaks and tabs as spaces), cut to ``NOTE_CHARS`` with …"""
    line = " ".join(note.split())
    if len(line) <= NOTE_CHARS:
        return line
    return line[: NOTE_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class Result:
    ok: bool
    status_code: int | None = None
    error: str | None = None


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def needs_phone(self) -> bool:
        """A channel that reaches a person by number can do nothing without one."""
        ...

    async def send(self, client: httpx.AsyncClient, notice: Notice, now: datetime) -> Result: ...


def body_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def sign_body(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()).decode()


# What a receiver's answer may not bring into the record: control characters (C0, DEL and
# C1) and halves of surrogate pairs. PostgreSQL keeps NUL in neither text nor jsonb, so that
# an attempt answered "\x00" was lost with its outcome; the others garble a console or a log.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# As much of an error as is kept.
ERROR_CHARS = 500


def error_text(text: str) -> str:
    """An error from outside (a receiver's answer, a connection's failure) as recorded: its
    mobile and ID numbers masked, each character ``_UNPRINTABLE`` holds written as its escape
    (``\x00``), cut to ERROR_CHARS.

    A gateway's refusal may name the leader's number ("recipient 13800138000 is not
    reachable"), and the attempt and its ``notify_failed`` event are read by every operator and
    auditor: a full number is for admins only (docs/security.md). Masked before the escapes,
    which would put letters and digits beside a number (``\x0013800138000``)."""
    escaped = _UNPRINTABLE.sub(
        lambda found: found.group().encode("unicode_escape").decode("ascii"), mask_numbers(text)
    )
    return escaped[:ERROR_CHARS]


def failure(status_code: int | None, text: str) -> Result:
    return Result(False, status_code, error_text(text))


async def _post(
    client: httpx.AsyncClient,
    url: str | httpx.URL,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> httpx.Response | Result:
    try:
        return await client.post(
            url,
            content=body,
            headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
            auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
        )
    except httpx.HTTPError as error:
        return failure(None, f"{type(error).__name__}: {error}")


def _plain(response: httpx.Response | Result) -> Result:
    if isinstance(response, Result):
        return response
    if response.is_success:
        return Result(True, response.status_code)
    return failure(response.status_code, f"HTTP {response.status_code}: {response.text}")


def _robot(response: httpx.Response | Result) -> Result:
    """Group robots answer 200 with ``errcode`` 0 on success and another errcode otherwise."""
    result = _plain(response)
    if not result.ok or isinstance(response, Result):
        return result
    try:
        answer = response.json()
    except ValueError:
        return Result(False, response.status_code, "the robot's answer is not JSON")
    if isinstance(answer, dict) and answer.get("errcode") == 0:
        return result
    return failure(response.status_code, f"robot refused: {response.text}")


@dataclass(frozen=True)
class WebhookChannel:
    url: str
    secret: str
    name: str = "webhook"
    needs_phone: bool = False

    async def send(self, client: httpx.AsyncClient, notice: Notice, now: datetime) -> Result:
        body = body_bytes(notice.document())
        headers = {
            SIGNATURE_HEADER: sign_body(self.secret, body),
            EVENT_HEADER: EVENT,
            # The same id on every retry: the receiver can drop duplicates.
            DELIVERY_HEADER: notice.notification_id,
        }
        return _plain(await _post(client, self.url, body, headers=headers))


@dataclass(frozen=True)
class WeComChannel:
    url: str
    name: str = "wecom"
    needs_phone: bool = False

    async def send(self, client: httpx.AsyncClient, notice: Notice, now: datetime) -> Result:
        text: dict[str, Any] = {"content": notice.text()}
        if notice.phone:
            text["mentioned_mobile_list"] = [notice.phone]
        body = body_bytes({"msgtype": "text", "text": text})
        return _robot(await _post(client, self.url, body))


@dataclass(frozen=True)
class DingTalkChannel:
    url: str
    secret: str | None = None
    name: str = "dingtalk"
    needs_phone: bool = False

    async def send(self, client: httpx.AsyncClient, notice: Notice, now: datetime) -> Result:
        at: dict[str, Any] = {"atMobiles": [notice.phone] if notice.phone else [], "isAtAll": False}
        content = notice.text()
        if notice.phone:
            # DingTalk highlights an @mention only when the number also appears in the text.
            content += f" @{notice.phone}"
        body = body_bytes({"msgtype": "text", "text": {"content": content}, "at": at})
        url = httpx.URL(self.url)
        if self.secret:
            timestamp = int(now.timestamp() * 1000)
            # Added to the robot URL's own access_token, which must stay.
            signed = {"timestamp": str(timestamp), "sign": dingtalk_sign(self.secret, timestamp)}
            url = url.copy_merge_params(signed)
        return _robot(await _post(client, url, body))


class SmsGateway(Protocol):
    """Sends one text message to one number; how is the gateway's business."""

    async def send_sms(self, client: httpx.AsyncClient, phone: str, text: str) -> Result: ...


@dataclass(frozen=True)
class HttpSmsGateway:
    """A gateway that takes ``POST {"to", "text"}`` with HTTP Basic credentials."""

    url: str
    username: str | None = None
    password: str | None = None

    async def send_sms(self, client: httpx.AsyncClient, phone: str, text: str) -> Result:
        auth = httpx.BasicAuth(self.username, self.password or "") if self.username else None
        body = body_bytes({"to": phone, "text": text})
        return _plain(await _post(client, self.url, body, auth=auth))


@dataclass(frozen=True)
class SmsChannel:
    gateway: SmsGateway
    name: str = "sms"
    needs_phone: bool = True

    async def send(self, client: httpx.AsyncClient, notice: Notice, now: datetime) -> Result:
        assert notice.phone, "the SMS channel is only used for leaders with a number"
        return await self.gateway.send_sms(client, notice.phone, notice.text())


def configured_channels(settings: Settings) -> list[Channel]:
    """The channels the settings switch on, in the order they are tried."""
    channels: list[Channel] = []
    if settings.webhook_url:
        if settings.webhook_secret is None:
            raise ValueError("DISPATCH_WEBHOOK_SECRET is required with DISPATCH_WEBHOOK_URL")
        channels.append(
            WebhookChannel(settings.webhook_url, settings.webhook_secret.get_secret_value())
        )
    if settings.wecom_robot_url:
        channels.append(WeComChannel(settings.wecom_robot_url))
    if settings.dingtalk_robot_url:
        secret = settings.dingtalk_secret.get_secret_value() if settings.dingtalk_secret else None
        channels.append(DingTalkChannel(settings.dingtalk_robot_url, secret))
    if settings.sms_gateway_url:
        password = (
            settings.sms_gateway_password.get_secret_value()
            if settings.sms_gateway_password
            else None
        )
        gateway = HttpSmsGateway(settings.sms_gateway_url, settings.sms_gateway_username, password)
        channels.append(SmsChannel(gateway))
    return channels
