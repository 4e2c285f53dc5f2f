"""Structured logs: one JSON object a line, the incident id on every line about an incident,
and no personal data (no phone numbers, no client addresses, no query strings).

The incident id comes from a context variable: set for the length of a request about an
incident, of a job about one, or explicitly with ``about_incident``; or given as
``extra={"incident_id": ...}``.
"""

from __future__ import annotations

import importlib.util
import logging
import logging.config
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Receive, Scope, Send

from dispatch.config import Settings

current_incident: ContextVar[str | None] = ContextVar("current_incident", default=None)

# Mainland mobile numbers (with or without +86) and resident ID numbers (18 characters, a
# date of birth in the middle): never written to a log in full. A number stands apart from
# letters and digits: the ids are hex (uuid4), and about one in 700 holds 11 digits in a row
# between two letters. Any other character (a hanzi, punctuation) ends a number.
MOBILE = re.compile(r"(?<![0-9A-Za-z])(\+?86)?(1[3-9]\d)(\d{4})(\d{4})(?![0-9A-Za-z])")
ID_NUMBER = re.compile(
    r"(?<![0-9A-Za-z])(\d{4})(\d{2}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))"
    r"(\d{3}[0-9Xx])(?![0-9A-Za-z])"
)
INCIDENT_PATH = re.compile(r"^/api/v1/incidents/([0-9a-f]{32})(?:/|$)")
JSON_FIELDS = "%(levelname)s %(name)s %(message)s"


def mask_phone(phone: str | None) -> str:
    """Enough of a number to tell two apart in a log, not enough to call it."""
    if not phone:
        return ""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


def mask_numbers(text: str) -> str:
    """``text`` with every mobile and ID number in it masked as the rosters show them to
    those who may not see them (``138****8000``, ``4419**********0016``)."""
    text = MOBILE.sub(lambda m: f"{m.group(2)}****{m.group(4)}", text)
    return ID_NUMBER.sub(lambda m: f"{m.group(1)}{'*' * 10}{m.group(3)}", text)


@contextmanager
def about_incident(incident_id: str | None) -> Iterator[None]:
    token = current_incident.set(incident_id)
    try:
        yield
    finally:
        current_incident.reset(token)


class IncidentFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "incident_id", None) is None:
            incident_id = current_incident.get()
            if incident_id is not None:
                record.incident_id = incident_id
        return True


class RedactFilter(logging.Filter):
    """Masks mobile and ID numbers in the rendered message, whatever logged them. What the
    line adds to the message (a traceback, a stack) is masked as it is written
    (``MaskingFormatter``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's terminal colours, useless in a log collector.
        record.__dict__.pop("color_message", None)
        message = record.getMessage()
        masked = mask_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class MaskingFormatter(logging.Formatter):
    """The line as ``inner`` writes it, with every mobile and ID number in it masked.

    A traceback holds what the message does not: an exception's text, a statement and its
    values, the source lines of each frame. The formatters write it from the record's
    ``exc_info`` and ``stack_info`` (the JSON one formats it anew however the record was
    formatted before), so it is masked in the line they write, not on the record."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return mask_numbers(self.inner.format(record))


# uvicorn's line for a websocket handshake (on its error logger, not the access logger):
# '%s - "WebSocket %s" [accepted]', ... 403, ... %d, with the client and the path with its query.
WEBSOCKET_LINE = '%s - "WebSocket %s" '


class AccessFilter(logging.Filter):
    """uvicorn's access lines, and its lines about websocket handshakes, without the client's
    address or the query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple):
            return True
        if record.name == "uvicorn.access" and len(args) == 5:
            _client, method, path, _version, status = args
            path = _without_query(path)
            record.msg, record.args = "%s %s %s", (method, path, status)
            record.http_method, record.path, record.status = method, path, status
            found = INCIDENT_PATH.match(path)
            if found and getattr(record, "incident_id", None) is None:
                record.incident_id = found.group(1)
        elif isinstance(record.msg, str) and record.msg.startswith(WEBSOCKET_LINE):
            outcome = record.msg.removeprefix(WEBSOCKET_LINE)
            path = _without_query(args[1]) if len(args) > 1 else ""
            record.msg, record.args = "WebSocket %s " + outcome, (path, *args[2:])
            record.path = path
        return True


# Libraries whose own lines carry what a log never holds, and the level they are held at
# whatever DISPATCH_LOG_LEVEL says: at DEBUG aiosqlite writes each statement with its values
# (users' names, addresses, password hashes), SQLAlchemy its statements (INFO) and the rows it
# read (DEBUG), asyncpg its connections' parameters, websockets every frame (a hello's token,
# an alert's text) and a handshake's headers, httpcore each connection it opens; httpx at INFO
# every request's full URL, robot keys included.
QUIET_LIBRARIES = {
    "aiosqlite": logging.INFO,
    "asyncpg": logging.INFO,
    "sqlalchemy": logging.WARNING,
    "websockets": logging.INFO,
    "httpx": logging.WARNING,
    "httpcore": logging.INFO,
}


class QuietLibraries(logging.Filter):
    """Drops a quiet library's lines below its level (``QUIET_LIBRARIES``) whatever logger
    they come by: uvicorn hands websockets its own error logger, so the frames came as
    ``uvicorn.error``. The library is told by the file that logged the line."""

    def __init__(self) -> None:
        super().__init__()
        self.folders: list[tuple[str, int]] = []
        for name, level in QUIET_LIBRARIES.items():
            spec = importlib.util.find_spec(name)
            for folder in (spec.submodule_search_locations or []) if spec else []:
                for path in {folder, os.path.realpath(folder)}:
                    self.folders.append((os.path.join(path, ""), level))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        for folder, level in self.folders:
            if record.levelno < level and record.pathname.startswith(folder):
                return False
        return True


def _without_query(path: object) -> str:
    return str(path).split("?", 1)[0]


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        JSON_FIELDS,
        rename_fields={"levelname": "level", "name": "logger"},
        # ISO 8601 in UTC, like every time the server stores.
        timestamp="time",
        json_ensure_ascii=False,
    )


class TextFormatter(logging.Formatter):
    """A line for a terminal: its time as the JSON lines have it, ISO 8601 in UTC with the
    offset, not the host's local time without one (asctime's), which read the same on a
    UTC host and one in Asia/Shanghai eight hours apart."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="microseconds")


def text_formatter() -> logging.Formatter:
    return TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def handler(stream: IO[str], log_format: str = "json") -> logging.Handler:
    """A handler with the filters every line passes through."""
    out = logging.StreamHandler(stream)
    formatter = json_formatter() if log_format == "json" else text_formatter()
    out.setFormatter(MaskingFormatter(formatter))
    # First: a line dropped is never rendered.
    out.addFilter(QuietLibraries())
    out.addFilter(IncidentFilter())
    # Before the masking, which renders a message whose arguments hold a number: the access
    # filter needs uvicorn's arguments to drop the client and the query.
    out.addFilter(AccessFilter())
    out.addFilter(RedactFilter())
    return out


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """dictConfig for the served process: uvicorn's loggers and ours through one handler."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "default": {
                "()": "dispatch.observability.logs.handler",
                "stream": "ext://sys.stderr",
                "log_format": settings.log_format,
            }
        },
        "root": {"handlers": ["default"], "level": settings.log_level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            # Statement values, frames, URLs with keys: QUIET_LIBRARIES (their lines that come
            # by another logger are dropped by the handler, QuietLibraries).
            **{
                name: {"level": logging.getLevelName(level)}
                for name, level in QUIET_LIBRARIES.items()
            },
            # Every /readyz compares the schema with the migrations, and each migration run
            # lists the plugins it set up; that is no news.
            "alembic": {"level": "WARNING"},
        },
    }


def configure_logging(settings: Settings) -> None:
    """For a command that logs without uvicorn (``dispatch db upgrade``): the served process's
    handler, format and level."""
    logging.config.dictConfig(uvicorn_log_config(settings))


class IncidentLogContext:
    """ASGI middleware: a request under /api/v1/incidents/{id} logs with that incident id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = INCIDENT_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        with about_incident(found.group(1)):
            await self.app(scope, receive, send)
