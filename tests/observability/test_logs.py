"""The served process logs one JSON object a line, incident ids included, personal data not."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from dispatch.db import create_engine
from dispatch.observability import logs
from tests.conftest import free_port
from tests.processes import ServerProcess, server_env

INCIDENT = "0123456789abcdef0123456789abcdef"


async def test_the_served_process_writes_json_lines_without_addresses_or_queries(
    clean_database: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DISPATCH_DATABASE_URL": clean_database,
        "DISPATCH_SECRET_FILE": str(tmp_path / "secret.key"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatch", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                assert process.poll() is None
                await asyncio.sleep(0.05)
            # A number in the query once had the line rendered (masked) before the client and
            # the query could be dropped.
            query = {"token": "secret-in-a-query", "phone": "13800138000"}
            await client.get("/readyz", params=query)
            events = await client.get(f"/api/v1/incidents/{INCIDENT}/events")
            assert events.status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines, "the process logged nothing"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    about = [line for line in access if line.get("incident_id") == INCIDENT]
    assert [line["message"] for line in about] == [f"GET /api/v1/incidents/{INCIDENT}/events 401"]
    assert about[0]["status"] == 401
    for line in access:
        assert "127.0.0.1" not in json.dumps(line), "client addresses stay out of the logs"
    assert "secret-in-a-query" not in stderr
    assert "138****8000" not in stderr
    assert "color_message" not in stderr


def test_mobile_numbers_are_masked_whatever_logged_them() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.observability.masking")
    handler = logs.handler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with logs.about_incident(INCIDENT):
            logger.info("calling %s and +8613912345678", "13800138000")
        logger.info("no incident here")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "calling 138****8000 and 139****5678"
    assert first["incident_id"] == INCIDENT
    assert "incident_id" not in second
    assert logs.mask_phone("+86 138-0013-8000") == "861****8000"


def test_a_text_line_says_its_time_in_utc_with_the_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    """DISPATCH_LOG_FORMAT=text wrote the host's local time without an offset: on a host in
    Asia/Shanghai its lines were eight hours from the JSON lines' UTC, and nothing said so."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    stream = io.StringIO()
    logger = logging.getLogger("tests.observability.text")
    handler = logs.handler(stream, "text")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        before = datetime.now(UTC)
        logger.warning("the host clock is +60.000 s from the server's time")
        after = datetime.now(UTC)
    finally:
        logger.removeHandler(handler)
        monkeypatch.undo()
        time.tzset()
    stamp, rest = stream.getvalue().split(" ", 1)
    assert (
        rest
        == "WARNING tests.observability.text: the host clock is +60.000 s from the server's time\n"
    )
    written = datetime.fromisoformat(stamp)
    assert written.utcoffset() == timedelta(0), stamp
    # The UTC time it was written at, read from the same clock around the call (to the
    # microsecond the stamp is rounded to): not a local time taken for UTC, hours away.
    tick = timedelta(microseconds=1)
    assert before - tick <= written <= after + tick, (before, stamp, after)


def test_ids_are_not_taken_for_mobile_numbers() -> None:
    """About one id in 700 (uuid4 hex, dispatch.db.new_id) holds 11 decimal digits in a row
    between two letters: masked, the line no longer named the job, dispatch or incident."""
    stream = io.StringIO()
    logger = logging.getLogger("tests.observability.ids")
    handler = logs.handler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    job_id = "1464270a0c16483593299b6a939e3dbb"  # a real uuid4().hex
    try:
        logger.error("job %s failed; retrying in %ss", job_id, 5.0)
        logger.info("电话13912345678，身份证44190019900101001X。")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == f"job {job_id} failed; retrying in 5.0s"
    # Next to hanzi and punctuation, a number is still one.
    assert second["message"] == "电话139****5678，身份证4419**********001X。"


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_numbers_in_a_logged_traceback_or_stack_are_masked(log_format: str) -> None:
    """Only the message was masked: the traceback under it (an exception's text, the source
    line of each frame) and a logged stack were written as they were."""
    stream = io.StringIO()
    logger = logging.getLogger("tests.observability.tracebacks")
    handler = logs.handler(stream, log_format)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        try:
            raise ValueError("leader 13912345678, ID number 44190019900101001X")
        except ValueError:
            logger.exception("could not set the leader's phone")
        logger.warning("where from", stack_info=True)  # called about 13800138000
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "Traceback" in output and "Stack (most recent call last)" in output
    for number in ("13912345678", "44190019900101001X", "13800138000"):
        assert number not in output
    for masked in ("139****5678", "4419**********001X", "138****8000"):
        assert masked in output


async def test_a_database_error_names_its_statement_without_its_values(database_url: str) -> None:
    """Its text is logged with the traceback of a 500 or a failed job, kept as the job's
    outcome and shown by /readyz; the values were a leader's phone, a guard's ID number."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("CREATE TEMPORARY TABLE guards (id TEXT PRIMARY KEY, phone TEXT)")
            )
            await connection.execute(text("INSERT INTO guards VALUES ('a', '13800138000')"))
            with pytest.raises(DBAPIError) as refused:
                await connection.execute(
                    text("INSERT INTO guards VALUES (:id, :phone)"),
                    {"id": "a", "phone": "13912345678"},
                )
    finally:
        await engine.dispose()
    assert "INSERT INTO guards" in str(refused.value)
    assert "13912345678" not in str(refused.value)
    assert "13912345678" not in repr(refused.value)


async def test_websocket_handshakes_are_logged_without_addresses_or_queries(
    clean_database: str, tmp_path: Path
) -> None:
    """uvicorn logs a handshake on its error logger, with the client (the proxy's
    X-Forwarded-For) and the path with its query string."""
    server = ServerProcess(server_env(clean_database, tmp_path), tmp_path / "server.log")
    await server.start()
    try:
        query = "?phone=13800138000&token=secret-in-a-query"
        forwarded = {"X-Forwarded-For": "203.0.113.77"}
        async with connect(server.ws_url + query, additional_headers=forwarded):
            pass
        foreign = {**forwarded, "Origin": "http://elsewhere.example"}
        with pytest.raises(InvalidStatus):
            async with connect(server.ws_url + query, additional_headers=foreign):
                pass
    finally:
        server.terminate()
        server.stop()
    output = server.output()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    handshakes = [line for line in lines if line["message"].startswith("WebSocket")]
    assert [(line["logger"], line["message"], line["path"]) for line in handshakes] == [
        ("uvicorn.error", "WebSocket /ws [accepted]", "/ws"),
        ("uvicorn.error", "WebSocket /ws 403", "/ws"),
    ]
    for leaked in ("203.0.113.77", "secret-in-a-query", "phone=", "138****8000"):
        assert leaked not in output


async def test_debug_logs_carry_no_statement_values_and_no_websocket_frames(
    clean_database: str, tmp_path: Path
) -> None:
    """At DISPATCH_LOG_LEVEL=debug the libraries' own debug lines carried what docs/security.md
    says logs never do: aiosqlite wrote each statement with its values (a user's name, a
    password's hash), SQLAlchemy the rows it read, and websockets each frame (a hello's token)."""
    env = server_env(clean_database, tmp_path, log_level="debug", log_format="json")
    name = "wang-xiaoming-7f3a"
    add = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatch", "users", "add", name, "--role", "operator",
        env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, added = await asyncio.wait_for(add.communicate(b"long-password\n"), 60)
    assert add.returncode == 0, added.decode()
    server = ServerProcess(env, tmp_path / "server.log")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            reply = await client.post(
                "/api/v1/auth/token", data={"username": name, "password": "long-password"}
            )
            assert reply.status_code == 200, reply.text
            token = reply.json()["access_token"]
        async with connect(server.ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "token": token, "resume_from": 0}))
            assert json.loads(await ws.recv())["type"] == "welcome"
    finally:
        server.terminate()
        server.stop()
    output = server.output()
    for where in (added.decode(), output):
        lines = [json.loads(line) for line in where.splitlines() if line.startswith("{")]
        assert any(line["level"] == "DEBUG" for line in lines), "the level is debug"
        assert name not in where
        assert "$argon2" not in where
    assert token not in output
    assert "hello" not in output
