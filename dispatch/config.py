"""All settings, read once from the environment (``DISPATCH_`` prefix) when the app starts."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal, get_args

import httpx
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_TARGETS = (60.0, 180.0, 300.0)

# Every number is finite (the model refuses inf and nan): an infinite wait or distance is
# nothing a server can use, and a time built from it (now + inf) ends the task that built it.
# A duration is at most a year: longer is a typing mistake, and a deadline or retry time
# built from it must stay within the calendar.
YEAR_S = 366 * 24 * 3600
# The shortest token signing secret taken, from DISPATCH_SECRET_KEY or DISPATCH_SECRET_FILE.
MIN_SECRET_CHARS = 32
MAX_RETENTION_DAYS = 3660
Seconds = Annotated[float, Field(le=YEAR_S)]

# Settings that are off, or take a default, while unset. An empty or blank value is the same
# as none: docker-compose.yml passes those it offers as ``${NAME:-}``, which is "" when the
# operator set nothing. A feature that is on and needs one of them refuses to start without it.
OPTIONAL_SETTINGS = (
    "secret_key",
    "tile_url",
    "webhook_url",
    "webhook_secret",
    "wecom_robot_url",
    "dingtalk_robot_url",
    "dingtalk_secret",
    "sms_gateway_url",
    "sms_gateway_username",
    "sms_gateway_password",
)

# Where the notifiers send: each is requested as it is given, and may carry a key.
NOTIFIER_URLS = ("webhook_url", "wecom_robot_url", "dingtalk_robot_url", "sms_gateway_url")

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["json", "text"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)

# Settings whose values a message never repeats: keys, passwords, and URLs that carry them
# (a robot's key, a tile service's key, the database's password).
SECRET_SETTINGS = frozenset({"database_url", *OPTIONAL_SETTINGS})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCH_", extra="ignore", allow_inf_nan=False)

    database_url: str = "sqlite+aiosqlite:///./dispatch.db"
    # PostgreSQL connections a process holds for units of work that write (reports, accepts,
    # acknowledgements, timers); more wait for one in turn. Every report locks rows all reports
    # share (the board's mailbox) until its commit, and the commit waits for the event loop:
    # with many transactions in flight that hold grows with them, and so does the queue on it.
    db_pool_size: int = Field(default=4, ge=1)
    # ... and for reads (GET requests, websocket replays), apart: a long report or export
    # never makes a report wait for a connection.
    db_read_pool_size: int = Field(default=10, ge=1)
    # A request that waits longer for a connection is answered 503 with Retry-After.
    db_pool_timeout_s: Seconds = Field(default=30.0, gt=0)
    # PostgreSQL ends a session of the writers' pool idle this long inside a transaction, and
    # with it the transaction and its row locks: a server whose host lost power (or froze)
    # between two statements of a report held the board's mailbox for as long as the
    # database took to notice the connection dead (TCP keepalive, two hours by default), and
    # every other server's reports waited on it.
    db_idle_in_transaction_s: Seconds = Field(default=60.0, gt=0)
    # A PostgreSQL connection whose other end is heard nothing from for about this long (its
    # host gone dark: power lost, the network cut) is given up by both ends, in the middle of
    # a statement too: the request is answered 503 and the pool makes new connections once
    # the host is back. A connect that gets no answer waits as long. Before, TCP's defaults
    # held such a request, and the database such a session and its row locks, for hours.
    db_host_timeout_s: Seconds = Field(default=30.0, ge=1)
    # Seconds to be on scene for tiers 1, 2 and 3. Tests shorten them to seconds.
    chain_targets: Annotated[tuple[float, float, float], NoDecode] = DEFAULT_TARGETS
    # At least MIN_SECRET_CHARS: the key of the tokens' HMAC-SHA256 (RFC 7518 asks for 256 bits).
    secret_key: str | None = Field(default=None, min_length=MIN_SECRET_CHARS)
    # Where the embedded default keeps its generated signing secret.
    secret_file: Path = Path("./dispatch-secret.key")
    token_ttl_s: Annotated[int, Field(le=YEAR_S)] = Field(default=12 * 3600, gt=0)
    # The longest a password login lasts, renewed or not: a week, so that a leader's phone kept
    # open through a week of shifts asks for the password once, told ahead, while a token taken
    # unnoticed and renewed by whoever took it dies within the week all the same.
    login_max_age_s: Annotated[int, Field(le=YEAR_S)] = Field(default=7 * 24 * 3600, gt=0)
    # How long a process may answer a seen token from memory. Changes made through the API
    # (logout, disabling, password resets) end cached tokens at once in every process; this
    # bounds how long one made past it, directly in the database, may go unseen. 0: no cache.
    principal_cache_s: Seconds = Field(default=30.0, ge=0)
    # Argon2id cost; the defaults follow the argon2-cffi recommendation.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    # Per-socket outbound queue; a consumer that lets it fill is dropped and resumes.
    ws_queue_size: int = Field(default=1000, gt=0)
    ws_hello_timeout_s: Seconds = Field(default=5.0, gt=0)
    # The protocol's keepalive: a socket whose client has sent nothing for ws_ping_interval_s
    # is pinged, and dropped when its pong does not come within ws_ping_timeout_s. Above
    # ws_client_ping_s, so the pages' own pings keep their sockets from being pinged too.
    ws_ping_interval_s: Seconds = Field(default=25.0, gt=0)
    ws_ping_timeout_s: Seconds = Field(default=15.0, gt=0)
    # The pages' own look at their socket (the protocol's pings above are invisible to them):
    # a page that heard nothing for ws_client_ping_s sends a ping, and one that then hears
    # nothing for ws_client_timeout_s more gives the socket up and reconnects, resuming. A
    # silently dead line is so found within their sum, where TCP takes many minutes.
    ws_client_ping_s: Seconds = Field(default=20.0, gt=0)
    ws_client_timeout_s: Seconds = Field(default=10.0, gt=0)
    # How long the console's and the phone's requests wait for their answer before they are
    # given up as failed by the network: a tap sent on a silently dead line is sent again
    # (over a new connection) instead of waiting the many minutes TCP takes to give up.
    page_request_timeout_s: Seconds = Field(default=15.0, gt=0)
    ws_max_frame_bytes: int = Field(default=64 * 1024, gt=0)
    ws_allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    message_retention_days: float = Field(default=7.0, gt=0, le=MAX_RETENTION_DAYS)
    # How often an idle timer looks for due deadlines that another process may have created.
    timer_poll_s: Seconds = Field(default=1.0, gt=0)
    # The server keeps its own time from start-up (dispatch/clock.py): a host clock that moves
    # more than this away from it (a step) is logged once and shown by a gauge ...
    clock_step_warn_s: Seconds = Field(default=2.0, gt=0)
    # ... looked at this often; each look is one read of the host clock.
    clock_check_s: Seconds = Field(default=10.0, gt=0)
    # Escalation: with no tier-1 dispatch accepted this long after the report (or no tier-1
    # zone covering the incident at all), alert the tier-1 teams within the wider ring.
    escalation_after_s: Seconds = Field(default=20.0, gt=0)
    escalation_ring_m: float = Field(default=1000.0, gt=0)
    # Automatic arrival: a fix this accurate, this close to the incident, counts as on scene.
    geofence_radius_m: float = Field(default=50.0, gt=0)
    geofence_accuracy_m: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=256 * 1024, gt=0)
    max_zone_vertices: int = Field(default=10_000, gt=3)
    # Uploaded rosters (XLSX/CSV) and village boundaries (GeoJSON) are refused above this.
    max_upload_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    # Surveyed village boundaries carry far more vertices than drawn team zones.
    max_village_vertices: int = Field(default=200_000, gt=3)
    # The pages' map. No tile URL: a plain background with zones and a scale bar (offline
    # control rooms). Amap and Tencent tiles are GCJ-02: set tile_crs so overlays line up.
    tile_url: str | None = None
    tile_crs: str = Field(default="wgs84", pattern="^(wgs84|gcj02)$")
    tile_subdomains: str = "abc"
    tile_attribution: str = ""
    tile_max_zoom: int = Field(default=18, ge=1, le=22)
    # Where the map opens when no team is known yet (WGS84); the demo town by default.
    map_center_lon: float = Field(default=114.159, ge=-180, le=180)
    map_center_lat: float = Field(default=22.847, ge=-90, le=90)
    map_zoom: int = Field(default=15, ge=1, le=22)
    # Logs: one JSON object a line (for collectors) or plain text (for a terminal).
    log_format: LogFormat = "json"
    log_level: LogLevel = "INFO"
    # Outbound notifiers, each off until configured: they reach a leader whose phone has not
    # acknowledged an alert within notify_after_s (no websocket, a killed background tab).
    notify_after_s: Seconds = Field(default=15.0, gt=0)
    notify_max_attempts: int = Field(default=5, ge=1, le=20)
    # The wait before retry n is notify_backoff_s * 2 ** (n - 1), counted from the end of
    # attempt n: its answer, or notify_timeout_s after it began (the whole request's limit).
    notify_backoff_s: Seconds = Field(default=2.0, gt=0)
    notify_timeout_s: Seconds = Field(default=5.0, gt=0)
    # After a restart, a leader whose phone was connected to a server process when it stopped
    # (or died) is given this long, from when the server is back, for the phone to reconnect
    # and acknowledge what it missed before his unacknowledged alerts are taken as undelivered:
    # the pages reconnect within half a second of a restart and within 5 s of any other drop.
    # A leader whose phone was not connected then is reached at once, as ever. 0: no grace.
    notify_reconnect_grace_s: Seconds = Field(default=10.0, ge=0)
    webhook_url: str | None = None
    # Required with the URL: an unsigned (or empty-keyed) webhook could be forged.
    webhook_secret: SecretStr | None = Field(default=None, validate_default=True)
    wecom_robot_url: str | None = None
    dingtalk_robot_url: str | None = None
    dingtalk_secret: SecretStr | None = None
    sms_gateway_url: str | None = None
    sms_gateway_username: str | None = None
    # The gateway's HTTP Basic credentials: both or neither.
    sms_gateway_password: SecretStr | None = Field(default=None, validate_default=True)
    # Reachability: how often a process refreshes its leaders' presence rows; a row not
    # refreshed for three of these is a process gone away.
    presence_heartbeat_s: Seconds = Field(default=10.0, gt=0)

    # Login backoff (docs/security.md): failures beyond the free ones double the wait, up to
    # the maximum; never a permanent lockout. Per account name, and per client address.
    login_account_free_failures: int = Field(default=5, ge=1)
    login_address_free_failures: int = Field(default=20, ge=1)
    login_backoff_s: Seconds = Field(default=1.0, gt=0)
    login_account_backoff_max_s: Seconds = Field(default=300.0, gt=0)
    login_address_backoff_max_s: Seconds = Field(default=900.0, gt=0)
    login_forget_after_s: Seconds = Field(default=3600.0, gt=0)
    # Incident reports per user: a burst, refilled at a steady rate (shared by all processes).
    report_burst: int = Field(default=30, ge=1)
    report_per_min: float = Field(default=30.0, gt=0)
    # Frames a websocket may send: a burst, refilled per second; beyond it the socket is closed.
    ws_frame_burst: int = Field(default=500, ge=1)
    ws_frames_per_s: float = Field(default=100.0, gt=0)
    # How long acknowledgements gather before they are written together: each write costs a
    # dozen statements whatever its size. Their times are stamped on arrival, not on writing.
    ack_gather_ms: float = Field(default=10.0, ge=0, le=1000)
    # At shutdown, requests still under way and sockets not yet closed (a client trickling a
    # body, a phone that does not answer the close) are given this long, then cut, so that the
    # application's shutdown (the flush below) runs before the stop timeout kills the process.
    # Whole seconds: uvicorn's timeout_graceful_shutdown.
    shutdown_requests_s: int = Field(default=10, ge=1, le=YEAR_S)
    # At shutdown, acknowledgements not yet recorded are tried again for this long while the
    # database refuses them; what is left is recorded when the phones resume.
    shutdown_ack_flush_s: Seconds = Field(default=10.0, ge=0)
    # Once started, the process's long-lived objects (zone index, modules) leave the cyclic
    # garbage collector's view, and young objects are collected less often: its full passes
    # over thousands of sockets were pauses of tens of milliseconds on the alert path.
    gc_settle: bool = True
    # Before serving, the routes' request handlers are built (FastAPI builds a router's on the
    # first request that reaches it, some 0.2 s of CPU for all of them): the first accept
    # after a restart waited for that.
    warm_routes: bool = True

    @field_validator(*OPTIONAL_SETTINGS, mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not text.strip():
            return None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return _one_of(value, LOG_LEVELS, str.upper)

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_in_any_case(cls, value: object) -> object:
        return _one_of(value, LOG_FORMATS, str.lower)

    @field_validator(*NOTIFIER_URLS)
    @classmethod
    def _notifier_url_can_be_requested(cls, value: str | None) -> str | None:
        # Taken as given, a URL without its scheme or host failed every notification
        # ("UnsupportedProtocol"), found only when a leader did not answer a real alert. The
        # parser's own message is left out: it may quote the URL, and with it a robot's key.
        if value is None:
            return value
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_is_signed(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("webhook_url"):
            raise ValueError("required with DISPATCH_WEBHOOK_URL, and not empty")
        return value

    @field_validator("sms_gateway_password")
    @classmethod
    def _sms_credentials_go_together(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if not info.data.get("sms_gateway_url"):
            return value
        username = info.data.get("sms_gateway_username")
        if username is not None and value is None:
            raise ValueError("required with DISPATCH_SMS_GATEWAY_USERNAME, and not empty")
        if username is None and value is not None:
            raise ValueError("set without DISPATCH_SMS_GATEWAY_USERNAME: give both or neither")
        return value

    @field_validator("notify_backoff_s")
    @classmethod
    def _last_retry_within_a_year(cls, value: float, info: ValidationInfo) -> float:
        attempts = info.data.get("notify_max_attempts")
        # The wait before retry n is value * 2 ** (n - 1); the last retry is attempt n + 1.
        if attempts is not None and attempts > 1 and value * 2 ** (attempts - 2) > YEAR_S:
            raise ValueError(
                f"doubled for each of DISPATCH_NOTIFY_MAX_ATTEMPTS={attempts} attempts, the last "
                f"wait would be over a year ({YEAR_S} s)"
            )
        return value

    @field_validator("chain_targets", mode="before")
    @classmethod
    def _parse_targets(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if len(parts) != 3:
                raise ValueError("three seconds values, e.g. 60,180,300")
            targets = tuple(float(p) for p in parts)
            if not all(math.isfinite(t) for t in targets):
                raise ValueError("chain targets must be positive, finite seconds")
            return targets
        return value

    @field_validator("chain_targets")
    @classmethod
    def _check_targets(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not math.isfinite(t) or t <= 0 for t in value):
            raise ValueError("chain targets must be positive, finite seconds")
        if any(t > YEAR_S for t in value):
            raise ValueError(f"a chain target is at most a year ({YEAR_S} s)")
        # A later tier is the backup of an earlier one (escalation widens the ring while
        # tier 2 is on its way): a tier 2 due before tier 1 is a typing mistake, not a plan.
        if any(later < earlier for earlier, later in pairwise(value)):
            raise ValueError("chain targets must not decrease from tier 1 to tier 3")
        return value

    @field_validator("ws_allowed_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def target_for(self, tier: int) -> float:
        return self.chain_targets[tier - 1]


def _one_of(value: object, choices: tuple[str, ...], case: Callable[[str], str]) -> object:
    """``value`` as the choice it names in another case (debug: DEBUG); anything else as given,
    for the refusal to show."""
    if isinstance(value, str) and case(value.strip()) in choices:
        return case(value.strip())
    return value


def setting_errors(error: ValidationError) -> list[str]:
    """One line for each setting ``Settings`` refused, naming its environment variable and
    what was given (unless it may hold a secret)."""
    lines = []
    for problem in error.errors(include_url=False):
        loc = problem["loc"]
        name = str(loc[0]) if loc else None
        message = problem["msg"]
        if problem["type"] == "value_error" and "error" in problem.get("ctx", {}):
            message = str(problem["ctx"]["error"])  # without pydantic's "Value error, "
        where = f"DISPATCH_{name.upper()}: " if name is not None else ""
        given = repr(problem.get("input"))
        if name is None or name in SECRET_SETTINGS:
            given = ""
        elif len(given) > 80:
            given = f" (got {given[:77]}...)"
        else:
            given = f" (got {given})"
        lines.append(f"error: {where}{message}{given}")
    return lines
