"""The command line refuses what it cannot use in one line on stderr: exit 2 for arguments that
make no sense, 1 for a database or server it cannot use; never a traceback, never a password."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from argon2 import PasswordHasher

from dispatch import migrate
from dispatch.cli import _parser, database_url_problem
from dispatch.config import Settings
from dispatch.db import create_engine
from tests.conftest import (
    BACKENDS,
    database_url_named,
    free_port,
    fresh_database,
    pg_admin,
)
from tests.processes import ServerProcess, cli, server_env

DEFAULT_SHUTDOWN_REQUESTS_S: int = Settings.model_fields["shutdown_requests_s"].default


def dispatch(
    *args: str, database_url: str | None = None, stdin: str = "", **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISPATCH_ARGON2_TIME_COST": "1", "DISPATCH_ARGON2_MEMORY_KIB": "1024"}
    env.update({f"DISPATCH_{name.upper()}": value for name, value in settings.items()})
    if database_url is not None:
        env["DISPATCH_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "dispatch", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str], status: int) -> str:
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    return lines[0]


# ---------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("command", "subcommand"), [("db", "upgrade"), ("users", "add"), ("audit", "verify")]
)
def test_a_command_without_its_subcommand_shows_its_own_help(command: str, subcommand: str) -> None:
    done = dispatch(command)
    assert done.returncode == 2
    assert done.stderr.startswith(f"usage: dispatch {command} [-h] {{{subcommand}}}")
    assert subcommand in done.stderr


@pytest.mark.parametrize(
    ("args", "command", "unknown"),
    [
        (["serve", "--post", "8001"], "dispatch serve", "--post 8001"),
        (["db", "upgrade", "--yes"], "dispatch db upgrade", "--yes"),
        (["secret", "now"], "dispatch secret", "now"),
        (["users", "add", "chief", "--role", "admin", "--pasword", "x"], "dispatch users add",
         "--pasword x"),
        (["audit", "verify", "--checkpiont", "c"], "dispatch audit verify", "--checkpiont c"),
        (["simulate", "--incidnets", "3"], "dispatch simulate", "--incidnets 3"),
    ],
)  # fmt: skip
def test_a_mistyped_option_is_named_by_the_command_it_was_given_to(
    args: list[str], command: str, unknown: str
) -> None:
    """The whole program's usage and ``dispatch: error: unrecognized arguments`` sent the
    reader of ``dispatch serve --post 8001`` to a usage line without serve's options."""
    done = dispatch(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"usage: {command} [-h]"), done.stderr
    assert lines[-1] == f"{command}: error: unrecognized arguments: {unknown}"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["serve"], "serve the API, websockets and pages"),
        (["db", "upgrade"], "apply every pending migration"),
        (["secret"], "write the token signing secret to DISPATCH_SECRET_FILE unless it exists"),
        (["users", "add"], "add an account; the password is read from stdin"),
        (["audit", "verify"], "check every incident's event chain"),
    ],
)
def test_each_commands_help_says_what_it_does(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dispatch secret --help`` showed a usage line and -h alone: what the command does was
    only in ``dispatch --help``."""
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args([*args, "--help"])
    assert exited.value.code == 0
    assert says in " ".join(capsys.readouterr().out.split())


def test_serve_help_gives_the_defaults_and_where_the_settings_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "(default: 127.0.0.1)" in said and "(default: 8000)" in said
    assert "DISPATCH_DATABASE_URL" in said and "docs/deploy.md" in said


def test_the_parser_every_command_builds_imports_none_of_the_server() -> None:
    """Every command, ``--help`` and a mistyped argument among them, builds the whole parser:
    the server's modules (FastAPI, the schemas, pyproj) are for the commands that use them,
    a second of CPU otherwise spent at each start."""
    server = ("fastapi", "dispatch.schemas", "dispatch.audit.chain", "pyproj", "sqlalchemy")
    probe = (
        "import sys; from dispatch.cli import _parser; _parser(); "
        f"print(sorted(m for m in {server!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        # uvicorn kept the low 16 bits: 70000 listened on 4464, 65536 on any free port.
        ("--port", "70000"),
        ("--port", "65536"),
        ("--port", "0"),
        ("--port", "-1"),
        ("--port", "eighty"),
        # These ran one process, as if asked for one.
        ("--workers", "0"),
        ("--workers", "-2"),
    ],
)
def test_serve_refuses_a_port_or_a_number_of_workers_it_cannot_use(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["serve", option, value])
    assert exited.value.code == 2
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.startswith(f"dispatch serve: error: argument {option}: '{value}' is not")


def test_serve_on_a_host_name_that_does_not_resolve_names_the_option() -> None:
    """uvicorn logged only ``[Errno -2] Name or service not known``, after the migrations, and
    exited 3: nothing said it was --host."""
    done = dispatch("serve", "--host", "dispatch.invalid", "--port", str(free_port()))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    said = done.stderr.strip().splitlines()[-1]
    assert said.startswith("dispatch serve: error: argument --host: 'dispatch.invalid' is no ")


def test_serve_takes_every_port_and_any_number_of_workers() -> None:
    args = _parser().parse_args(["serve", "--port", "1", "--workers", "1"])
    assert (args.port, args.workers) == (1, 1)
    args = _parser().parse_args(["serve", "--port", "65535", "--workers", "8"])
    assert (args.port, args.workers) == (65535, 8)


def test_serve_on_a_port_out_of_range_starts_no_server() -> None:
    done = dispatch("serve", "--port", "65536")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "dispatch serve: error: argument --port: '65536' is not a port: 1 to 65535"
    )


# ---------------------------------------------------------------- settings


def test_a_bad_setting_is_one_line_naming_its_variable(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}"
    done = dispatch("db", "upgrade", database_url=url, log_level="verbose")
    assert one_error_line(done, 2) == (
        "error: DISPATCH_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' "
        "(got 'verbose')"
    )
    assert not (tmp_path / "dispatch.db").exists()


def test_every_bad_setting_has_its_line() -> None:
    done = dispatch("audit", "verify", timer_poll_s="-1", chain_targets="60,180")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert sorted(done.stderr.strip().splitlines()) == [
        "error: DISPATCH_CHAIN_TARGETS: three seconds values, e.g. 60,180,300 (got '60,180')",
        "error: DISPATCH_TIMER_POLL_S: Input should be greater than 0 (got '-1')",
    ]


def test_an_infinite_timer_poll_stops_the_server_in_one_line(tmp_path: Path) -> None:
    """It passed once, and the deadline timer died as the server started: no breach fired."""
    done = dispatch(
        "serve", "--port", str(free_port()),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}", timer_poll_s="inf",
    )  # fmt: skip
    assert one_error_line(done, 2) == (
        "error: DISPATCH_TIMER_POLL_S: Input should be a finite number (got 'inf')"
    )


def test_a_webhook_without_its_secret_stops_the_server_in_one_line(tmp_path: Path) -> None:
    done = dispatch(
        "serve", "--port", str(free_port()),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}",
        webhook_url="http://receiver/hook", webhook_secret="",
    )  # fmt: skip
    assert one_error_line(done, 2) == (
        "error: DISPATCH_WEBHOOK_SECRET: required with DISPATCH_WEBHOOK_URL, and not empty"
    )


def test_a_refused_credential_is_named_but_never_shown() -> None:
    done = dispatch(
        "db", "upgrade",
        sms_gateway_url="http://gateway/send", sms_gateway_password="hunter2secret",
    )  # fmt: skip
    line = one_error_line(done, 2)
    assert line.startswith("error: DISPATCH_SMS_GATEWAY_PASSWORD: set without")
    assert "hunter2secret" not in done.stderr


# ---------------------------------------------------------------- the token signing secret


@pytest.mark.parametrize(("content", "held"), [("", "no secret"), ("short\n", "a secret of 5")])
def test_serve_refuses_a_secret_file_without_a_usable_secret(
    content: str, held: str, tmp_path: Path
) -> None:
    """An empty file (a crash between its creation and the write) once gave a ready server
    whose every login failed."""
    secret_file = tmp_path / "secret.key"
    secret_file.write_text(content)
    database = tmp_path / "dispatch.db"
    done = dispatch(
        "serve", "--port", str(free_port()),
        database_url=f"sqlite+aiosqlite:///{database}", secret_file=str(secret_file),
    )  # fmt: skip
    line = one_error_line(done, 1)
    assert line.startswith(f"error: DISPATCH_SECRET_FILE: {secret_file} holds {held}")
    assert "at least 32 characters" in line
    assert secret_file.read_text() == content, "left for the operator to look at"
    assert not database.exists(), "refused before anything else"


def test_a_short_secret_key_is_refused_without_showing_it() -> None:
    done = dispatch("secret", secret_key="too-short-a-key")
    line = one_error_line(done, 2)
    assert line.startswith("error: DISPATCH_SECRET_KEY: String should have at least 32")
    assert "too-short-a-key" not in done.stderr


def test_the_secret_file_is_made_whole_and_private(tmp_path: Path) -> None:
    secret_file = tmp_path / "keys" / "secret.key"
    done = dispatch("secret", secret_file=str(secret_file))
    assert done.returncode == 0, done.stderr
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert len(secret_file.read_text()) == 64
    assert [p.name for p in secret_file.parent.iterdir()] == ["secret.key"]
    # Kept as it is from then on.
    before = secret_file.read_text()
    assert dispatch("secret", secret_file=str(secret_file)).returncode == 0
    assert secret_file.read_text() == before


def test_processes_starting_together_share_one_secret(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.key"
    show = (
        "from dispatch.config import Settings; from dispatch.runtime import load_secret; "
        "print(load_secret(Settings()))"
    )
    env = {**os.environ, "DISPATCH_SECRET_FILE": str(secret_file)}
    starting = [
        subprocess.Popen([sys.executable, "-c", show], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    secrets = {process.communicate(timeout=60)[0].strip() for process in starting}
    assert secrets == {secret_file.read_text()}
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


# ---------------------------------------------------------------- dispatch simulate: arguments


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--speed", "0", "must be above 0"),
        ("--speed", "-5", "must be above 0"),
        ("--speed", "nan", "finite"),
        ("--speed", "inf", "finite"),
        ("--speed", "fast", "not a number"),
        ("--rate", "0", "must be above 0"),
        ("--rate", "-3", "must be above 0"),
        ("--stations", "0", "at least 1"),
        ("--stations", "1.5", "not a whole number"),
        ("--fixed-per-station", "-1", "0 or more"),
        ("--mobile-per-station", "-1", "0 or more"),
        ("--side-km", "-1", "must be above 0"),
        ("--side-km", "0", "must be above 0"),
        ("--leaders-per-team", "0", "at least 1"),
        ("--incidents", "-1", "at least 1"),
        ("--incidents", "0", "at least 1"),
        ("--walk", "0", "must be above 0"),
        ("--ride", "-1", "must be above 0"),
        ("--drive", "0", "must be above 0"),
        ("--accept-median", "0", "must be above 0"),
        ("--miss", "2", "share from 0 to 1"),
        ("--miss", "-0.1", "share from 0 to 1"),
        ("--processes", "-1", "0 or more"),
        ("--url", "notaurl", "expected http"),
        ("--url", "ftp://example.org", "expected http"),
        ("--database-url", "garbage", "not a database URL"),
        ("--database-url", "mysql://u:secret@h/db", "unsupported database"),
        ("--database-url", "sqlite+aiosqlite:////no/such/dir/x.db", "does not exist"),
    ],
)
def test_simulate_refuses_nonsense_arguments(
    option: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["simulate", option, value])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}:" in error
    assert says in error
    assert "secret" not in error


@pytest.mark.parametrize(
    "args",
    [
        ["--miss", "0"],
        ["--miss", "1"],
        ["--processes", "0"],
        ["--fixed-per-station", "0"],
        ["--speed", "0.5"],
        ["--url", "http://127.0.0.1:8000", "--admin", "admin"],
        ["--database-url", "sqlite+aiosqlite:///./sim.db"],
        ["--database-url", "postgresql+asyncpg://u:p@127.0.0.1:5432/db"],
    ],
)
def test_simulate_takes_sensible_arguments(args: list[str]) -> None:
    parsed = _parser().parse_args(["simulate", *args])
    assert parsed.handler is not None


def test_simulate_against_a_server_needs_an_admin() -> None:
    done = dispatch("simulate", "--url", "http://127.0.0.1:9")
    assert "--admin" in one_error_line(done, 2)


# ---------------------------------------------------------------- dispatch simulate: at run time


def test_simulate_names_a_server_it_cannot_reach() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = dispatch("simulate", "--url", url, "--admin", "admin", stdin="password\n")
    assert url in one_error_line(done, 1)


def test_simulate_stops_at_a_bad_setting_before_it_seeds_anything(tmp_path: Path) -> None:
    """Its own server would refuse the setting (deploy.md: "stops every dispatch command before
    it does anything", exit 2): found only once the town was seeded into the database given,
    it stopped there with exit 1, the server's line inside its own."""
    database = tmp_path / "sim.db"
    done = dispatch(
        "simulate", "--stations", "1", "--incidents", "1",
        "--database-url", f"sqlite+aiosqlite:///{database}", log_level="bogus",
    )  # fmt: skip
    assert one_error_line(done, 2) == (
        "error: DISPATCH_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' "
        "(got 'bogus')"
    )
    assert done.stdout == ""
    assert not database.exists()


def test_simulate_names_a_database_it_cannot_connect_to() -> None:
    url = f"postgresql+asyncpg://postgres:hunter2secret@127.0.0.1:{free_port()}/nowhere"
    done = dispatch("simulate", "--database-url", url, "--incidents", "1")
    line = one_error_line(done, 1)
    assert line.startswith("error: --database-url")
    assert "hunter2secret" not in done.stderr + done.stdout


# ---------------------------------------------------------------- dispatch db upgrade


@pytest.mark.parametrize(
    ("database_url", "says"),
    [
        ("garbage", "not a database URL"),
        ("mysql://root:hunter2secret@127.0.0.1/dispatch", "unsupported database 'mysql'"),
        ("sqlite+aiosqlite:////no/such/dir/dispatch.db", "does not exist"),
        # A password with '@' in it, not percent-encoded: what follows it was read as the host
        # (and shown, masked up to the '@'), or its ':' as the port's, a traceback.
        ("postgresql+asyncpg://dispatch:hunter2@secret@127.0.0.1:5432/dispatch",
         "holds an '@': write a password's @ : / ? # % percent-encoded (@ as %40"),
        ("postgresql+asyncpg://dispatch:hunter2@secret:w/x@127.0.0.1:5432/dispatch",
         "its port is not a number (expected"),
        ("postgresql+asyncpg://dispatch:hunter2@secret/x@127.0.0.1:5432/dispatch",
         "its host or database name holds an '@'"),
        ("postgresql+asyncpg://dispatch:hunter2secret@127.0.0.1:54x2/dispatch",
         "its port is not a number (expected"),
    ],
)  # fmt: skip
def test_db_upgrade_refuses_an_unusable_url(database_url: str, says: str) -> None:
    line = one_error_line(dispatch("db", "upgrade", database_url=database_url), 1)
    assert "DISPATCH_DATABASE_URL" in line
    assert says in line
    assert "hunter2" not in line and "secret" not in line


def test_serve_refuses_a_url_it_cannot_read_in_one_line(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://dispatch:hunter2@secret:w/x@127.0.0.1:5432/dispatch"
    secret = str(tmp_path / "secret.key")  # serve makes it first, not in the checkout
    done = dispatch("serve", "--port", str(free_port()), database_url=url, secret_file=secret)
    line = one_error_line(done, 1)
    assert line.startswith("error: DISPATCH_DATABASE_URL: not a database URL: its port")
    assert "hunter2" not in line and "secret" not in line


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql+asyncpg://dispatch:hunter2@secret:w/x@127.0.0.1:5432/dispatch",
        "sqlite+aiosqlite:////no/such/dir/dispatch.db",
    ],
)
def test_serve_refused_for_its_url_leaves_no_secret_file_behind(
    tmp_path: Path, database_url: str
) -> None:
    """The signing secret was made first: each refused start left a new secret file, which a
    second server of the town then did not share."""
    secret = tmp_path / "secret.key"
    done = dispatch(
        "serve", "--port", str(free_port()), database_url=database_url, secret_file=str(secret)
    )
    assert one_error_line(done, 1).startswith("error: DISPATCH_DATABASE_URL: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("query", "says"),
    [
        # libpq's form, which managed PostgreSQL providers hand out: asyncpg calls it ssl.
        ("sslmode=require", "the option 'sslmode' is not one the PostgreSQL driver (asyncpg) "
         "takes; asyncpg's is ssl=, with the same values, e.g. ?ssl=require"),
        ("connect_timeout=5", "the option 'connect_timeout' is not one the PostgreSQL driver"),
        ("sslmod=require", "the option 'sslmod' is not one the PostgreSQL driver"),
        # asyncpg's own, but a number: given as text it failed part-way through connecting.
        ("timeout=5", "the option 'timeout' cannot be given in the URL"),
        ("server_settings=x", "the option 'server_settings' cannot be given in the URL"),
        # The one number asyncpg reads from text: a bad one was its ValueError, a traceback.
        ("command_timeout=abc", "the option 'command_timeout' must be a number of seconds"),
        ("command_timeout=0", "the option 'command_timeout' must be a number of seconds"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", [("db", "upgrade"), ("audit", "verify"), ("serve",)])
def test_a_url_option_the_driver_does_not_take_is_named_in_one_line(
    tmp_path: Path, command: tuple[str, ...], query: str, says: str
) -> None:
    """Refused before connecting (no database listens at this address): asyncpg's TypeError
    for an unknown keyword was a traceback of a hundred lines."""
    url = f"postgresql+asyncpg://dispatch:hunter2secret@127.0.0.1:{free_port()}/dispatch?{query}"
    port = ("--port", str(free_port())) if command == ("serve",) else ()
    secret = str(tmp_path / "secret.key")
    line = one_error_line(dispatch(*command, *port, database_url=url, secret_file=secret), 1)
    assert line.startswith("error: DISPATCH_DATABASE_URL: the option ")
    assert says in line
    assert "hunter2secret" not in line


def test_the_url_options_each_driver_takes_pass(tmp_path: Path) -> None:
    for query in ("ssl=require", "host=/var/run/postgresql", "command_timeout=5"):
        assert database_url_problem(f"postgresql+asyncpg://u:p@db/dispatch?{query}") is None
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}"
    assert database_url_problem(f"{sqlite}?timeout=10") is None
    assert database_url_problem(f"{sqlite}?uri=true&mode=rwc") is None


def test_a_sqlite_url_option_the_driver_would_drop_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}?journal_mode=wal"
    line = one_error_line(dispatch("db", "upgrade", database_url=url), 1)
    assert line.startswith(
        "error: DISPATCH_DATABASE_URL: the option 'journal_mode' is not one SQLite's driver takes"
    )
    assert not (tmp_path / "dispatch.db").exists()


def test_db_upgrade_names_a_refused_port_without_the_password() -> None:
    url = f"postgresql+asyncpg://postgres:hunter2secret@127.0.0.1:{free_port()}/dispatch"
    line = one_error_line(dispatch("db", "upgrade", database_url=url), 1)
    assert "DISPATCH_DATABASE_URL" in line
    assert "Connect call failed" in line
    assert "hunter2secret" not in line
    assert "***" in line


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs PostgreSQL")
def test_db_upgrade_names_a_postgres_database_that_does_not_exist() -> None:
    name = f"dispatch_missing_{uuid.uuid4().hex[:12]}"
    url = f"postgresql+asyncpg://postgres:hunter2secret@127.0.0.1:5432/{name}"
    line = one_error_line(dispatch("db", "upgrade", database_url=url), 1)
    assert "DISPATCH_DATABASE_URL" in line
    assert f'database "{name}" does not exist' in line
    assert "hunter2secret" not in line


@contextlib.asynccontextmanager
async def empty_database(backend: str, folder: Path) -> AsyncIterator[str]:
    """A database without a table (a SQLite one in ``folder``, not made yet)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / 'new.db'}"
        return
    name = f"dispatch_test_{uuid.uuid4().hex[:12]}"
    async with pg_admin() as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url_named(name)
    finally:
        async with pg_admin() as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_db_upgrade_says_it_created_a_new_database(backend: str, tmp_path: Path) -> None:
    """It said "database at the newest migration" whatever it did: the operator could not tell
    a new database (a wrong URL, say) from the one expected."""
    newest = ", ".join(migrate.heads())
    every = ScriptDirectory.from_config(migrate.alembic_config("")).walk_revisions()
    async with empty_database(backend, tmp_path) as url:
        done = await asyncio.to_thread(dispatch, "db", "upgrade", database_url=url)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"database created at {newest} ({len(list(every))} migrations)\n"


async def test_db_upgrade_says_which_migrations_it_applied_or_that_none_were_due(
    backend: str, tmp_path: Path
) -> None:
    newest = ", ".join(migrate.heads())
    async with fresh_database(backend, tmp_path) as url:
        done = await asyncio.to_thread(dispatch, "db", "upgrade", database_url=url)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"database already at {newest} (the latest): nothing to do\n"

        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), "-2")
        engine = create_engine(url)
        try:
            (before,) = await migrate.current_revisions(engine)
        finally:
            await engine.dispose()
        done = await asyncio.to_thread(dispatch, "db", "upgrade", database_url=url)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"database upgraded from {before} to {newest} (2 migrations)\n"


def test_db_upgrade_still_creates_a_sqlite_database(tmp_path: Path) -> None:
    done = dispatch("db", "upgrade", database_url=f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "new.db").is_file()


# ---------------------------------------------------------------- dispatch users add


def test_users_add_names_the_rule_but_never_the_password(tmp_path: Path) -> None:
    database = tmp_path / "users.db"
    done = dispatch(
        "users", "add", "bob", "--role", "admin",
        database_url=f"sqlite+aiosqlite:///{database}", stdin="short\n",
    )  # fmt: skip
    line = one_error_line(done, 1)
    assert "password" in line
    assert "at least 8 characters" in line
    assert "short" not in line
    assert "input_value" not in done.stderr
    # Refused before anything touched the database.
    assert not database.exists()


def test_users_add_takes_a_name_as_the_api_does(tmp_path: Path) -> None:
    database = tmp_path / "users.db"
    url = f"sqlite+aiosqlite:///{database}"
    assert dispatch("db", "upgrade", database_url=url).returncode == 0
    for name, found in (("黄\u0007队长", "U+0007"), ("\u202e长队黄", "U+202E")):
        done = dispatch(
            "users", "add", name, "--role", "admin", database_url=url, stdin="long-password\n"
        )
        line = one_error_line(done, 1)
        assert line.startswith("error: name:") and f"control character ({found})" in line
    done = dispatch(
        "users", "add", "\u3000黄 队长 ", "--role", "admin",
        database_url=url, stdin="long-password\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with contextlib.closing(sqlite3.connect(database)) as connection:
        assert connection.execute("SELECT name FROM users").fetchall() == [("黄 队长",)]
        trail = connection.execute("SELECT data FROM audit_log WHERE action = 'cli_add_user'")
        assert [json.loads(data)["name"] for (data,) in trail] == ["黄 队长"]


@pytest.mark.parametrize(
    ("piped", "password"),
    [
        # A file written on Windows: the \\r kept made an account nobody could log into.
        ("long-password\r\n", "long-password"),
        ("long-password\n", "long-password"),
        ("long-password", "long-password"),
        # One line ending taken off, nothing else: what is left is the password.
        (" long password \r\r\n", " long password \r"),
    ],
)
def test_users_add_takes_the_password_without_its_line_ending(
    tmp_path: Path, piped: str, password: str
) -> None:
    database = tmp_path / "users.db"
    done = dispatch(
        "users", "add", "bob", "--role", "admin",
        database_url=f"sqlite+aiosqlite:///{database}", stdin=piped,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with contextlib.closing(sqlite3.connect(database)) as connection:
        [(stored,)] = connection.execute("SELECT password_hash FROM users").fetchall()
    assert PasswordHasher().verify(stored, password)


def test_users_add_names_an_unusable_database() -> None:
    done = dispatch(
        "users", "add", "bob", "--role", "admin",
        database_url="sqlite+aiosqlite:////no/such/dir/dispatch.db", stdin="long-password\n",
    )  # fmt: skip
    assert "DISPATCH_DATABASE_URL" in one_error_line(done, 1)


# ---------------------------------------------------------------- dispatch audit verify


def test_audit_verify_does_not_create_a_missing_sqlite_database(tmp_path: Path) -> None:
    database = tmp_path / "missing.db"
    done = dispatch("audit", "verify", database_url=f"sqlite+aiosqlite:///{database}")
    line = one_error_line(done, 1)
    assert "DISPATCH_DATABASE_URL" in line
    assert str(database) in line
    assert "ok:" not in done.stdout
    assert not database.exists()


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs PostgreSQL")
def test_audit_verify_names_a_postgres_database_that_does_not_exist() -> None:
    name = f"dispatch_missing_{uuid.uuid4().hex[:12]}"
    url = f"postgresql+asyncpg://postgres:hunter2secret@127.0.0.1:5432/{name}"
    line = one_error_line(dispatch("audit", "verify", database_url=url), 1)
    assert f'database "{name}" does not exist' in line
    assert "hunter2secret" not in line


def test_audit_verify_still_checks_an_existing_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}"
    assert dispatch("db", "upgrade", database_url=url).returncode == 0
    done = dispatch("audit", "verify", database_url=url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 0 events")


def test_audit_verify_leaves_a_sqlite_backup_byte_for_byte_as_it_was(tmp_path: Path) -> None:
    """A backup made by sqlite3's .backup is in the rollback journal mode; the server would
    turn it to WAL on connecting, which rewrites the file's header."""
    database = tmp_path / "backup.db"
    url = f"sqlite+aiosqlite:///{database}"
    assert dispatch("db", "upgrade", database_url=url).returncode == 0
    with contextlib.closing(sqlite3.connect(database)) as connection:
        assert connection.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    before = hashlib.sha256(database.read_bytes()).hexdigest()

    done = dispatch("audit", "verify", database_url=url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 0 events")
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db"]


async def test_audit_verify_refuses_an_older_database_and_leaves_it_as_it_is(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), "0014")
        done = await asyncio.to_thread(dispatch, "audit", "verify", database_url=url)
        line = one_error_line(done, 1)
        assert "at revision 0014, older than this release's" in line
        assert "copy" in line and "dispatch db upgrade" in line
        assert "ok:" not in done.stdout
        engine = create_engine(url)
        try:
            assert await migrate.current_revisions(engine) == ["0014"]
        finally:
            await engine.dispose()


# ---------------------------------------------------------------- dispatch serve: stopping


async def test_a_client_trickling_a_body_holds_the_stop_no_longer_than_its_bound(
    tmp_path: Path,
) -> None:
    """uvicorn waited for every request to end: one client sending a body a byte a second
    held a SIGTERM until Docker's SIGKILL, and the application's shutdown, which writes the
    acknowledgements held in memory, never ran. DISPATCH_SHUTDOWN_REQUESTS_S bounds the wait.

    The bound is set above its default: the stop taking at least that long shows the setting,
    not the default, is the bound, with no upper bound on a wall clock (a loaded box stretches
    a stop). That it ended the wait, not the request, is in the log."""
    bound_s = DEFAULT_SHUTDOWN_REQUESTS_S + 4
    url = f"sqlite+aiosqlite:///{tmp_path / 'town.db'}"
    env = server_env(url, tmp_path, shutdown_requests_s=str(bound_s), shutdown_ack_flush_s="1")
    server = ServerProcess(env, tmp_path / "server.log")
    await server.start()
    assert server.process is not None
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)

    async def trickle() -> None:
        writer.write(
            b"POST /api/v1/auth/token HTTP/1.1\r\nHost: town\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
        )
        for _ in range(1200):
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.1)

    sending = asyncio.create_task(trickle())
    try:
        await asyncio.sleep(0.5)
        assert not sending.done(), "the body is still on its way"
        started = asyncio.get_running_loop().time()
        server.process.send_signal(signal.SIGTERM)
        try:
            # Only a guard against waiting for ever (the body would take two minutes).
            await asyncio.to_thread(server.process.wait, 90)
        except subprocess.TimeoutExpired:
            pytest.fail("the trickling client held the stop")
        took = asyncio.get_running_loop().time() - started
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await sending
        writer.close()
        server.stop()
    # The requests' bound (the default would have let it go sooner), then the lifespan's
    # shutdown (a flush with nothing held).
    assert took >= bound_s, took
    output = server.output()
    assert "timeout graceful shutdown exceeded" in output
    assert output.index("timeout graceful shutdown exceeded") < output.index(
        "Application shutdown complete."
    ), "the application's shutdown ran after the requests were cut"


# `dispatch serve` whose deadline timer breaks once a file exists, a fault injected as a bug
# outside the timer's own error handling would be.
BREAKABLE_SERVE = """
import os, sys
from dispatch.jobs import tasks
wake_time = tasks.wake_time
def breaking(*args):
    if os.path.exists(os.environ["BREAK_THE_TIMER"]):
        raise RuntimeError("the timer broke")
    return wake_time(*args)
tasks.wake_time = breaking
from dispatch.cli import main
sys.exit(main())
"""


async def test_a_server_whose_chain_timer_stopped_exits_for_its_restart_policy(
    tmp_path: Path,
) -> None:
    """A single server whose timer stopped answered /readyz 503 but kept serving with no
    deadline firing: nothing restarts an unhealthy container. It now stops itself as on
    SIGTERM (its shutdown runs), with status 70, and once restarted the tier that fell due
    meanwhile is breached at its deadline."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'town.db'}"
    trigger = tmp_path / "break-the-timer"
    env = server_env(url, tmp_path, chain_targets="3,10,30", shutdown_requests_s="2")
    env["BREAK_THE_TIMER"] = str(trigger)
    await cli(env, "users", "add", "chief", "--role", "admin", stdin="admin-password\n")
    await cli(env, "users", "add", "duty", "--role", "operator", stdin="operator-password\n")
    port = free_port()
    log = tmp_path / "breakable.log"
    with log.open("ab") as out:
        breakable = subprocess.Popen(
            [sys.executable, "-c", BREAKABLE_SERVE, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    restarted = ServerProcess(env, tmp_path / "restarted.log", port=port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(400):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                assert breakable.poll() is None, log.read_text()
                await asyncio.sleep(0.05)
            admin = await bearer(client, "chief", "admin-password")
            team = {"name": "三中驻点队", "kind": "fixed_post", "location": LOCATION}
            assert (await client.post("/api/v1/teams", json=team, headers=admin)).is_success
            operator = await bearer(client, "duty", "operator-password")
            body = {"location": LOCATION, "category": "violence"}
            reply = await client.post("/api/v1/incidents", json=body, headers=operator)
            assert reply.status_code == 201, reply.text
            incident = reply.json()["id"]
        trigger.touch()
        try:
            status = await asyncio.to_thread(breakable.wait, 20)
        except subprocess.TimeoutExpired:
            pytest.fail("the server kept running with its chain timer stopped")
        output = log.read_text()
        assert status == 70, output
        assert "background task chain-timer stopped (RuntimeError: the timer broke)" in output
        assert "exit status 70, for its restart policy to start it again" in output
        assert "Application shutdown complete." in output, "stopped as on SIGTERM"

        # What compose's restart: unless-stopped (or systemd's Restart=) does next.
        trigger.unlink()
        await restarted.start()
        async with httpx.AsyncClient(base_url=restarted.base_url) as client:
            operator = await bearer(client, "duty", "operator-password")
            for _ in range(300):
                reply = await client.get(f"/api/v1/incidents/{incident}", headers=operator)
                tier = reply.json()["chain"][0]
                if tier["breached_at"] is not None:
                    break
                await asyncio.sleep(0.05)
            assert tier["breached_at"] == tier["deadline"], tier
    finally:
        if breakable.poll() is None:
            breakable.kill()
            breakable.wait(10)
        restarted.stop()


LOCATION = {"lon": 114.159, "lat": 22.847}


async def bearer(client: httpx.AsyncClient, name: str, password: str) -> dict[str, str]:
    reply = await client.post("/api/v1/auth/token", data={"username": name, "password": password})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


# The same fault for every process started with this folder on PYTHONPATH, the workers that
# uvicorn spawns included; once (the file is removed as the timer breaks).
BREAKING_SITE = """
import builtins, os, sys
TRIGGER = os.environ["BREAK_THE_TIMER"]
_import = builtins.__import__
def hook(name, *args, **kwargs):
    module = _import(name, *args, **kwargs)
    tasks = sys.modules.get("dispatch.jobs.tasks")
    if tasks is not None and hasattr(tasks, "wake_time") and not hasattr(tasks, "broken"):
        tasks.broken = wake_time = tasks.wake_time
        def breaking(*args):
            if os.path.exists(TRIGGER):
                os.remove(TRIGGER)
                raise RuntimeError("the timer broke")
            return wake_time(*args)
        tasks.wake_time = breaking
    return module
builtins.__import__ = hook
"""


async def test_a_worker_whose_chain_timer_stopped_is_replaced_by_a_new_one(
    postgres_only: str, tmp_path: Path
) -> None:
    """With --workers, the worker stops itself as on SIGTERM and uvicorn's supervisor starts
    another in its place: the server keeps its port and both workers are ready again."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BREAKING_SITE)
    trigger = tmp_path / "break-the-timer"
    env = server_env(postgres_only, tmp_path, shutdown_requests_s="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["BREAK_THE_TIMER"] = str(trigger)
    server = ServerProcess(env, tmp_path / "server.log", args=("--workers", "2"))
    try:
        await server.start()
        trigger.touch()
        for _ in range(600):
            if len(re.findall(r"Started server process", server.output())) == 3:
                break
            await asyncio.sleep(0.05)
        output = server.output()
        assert "background task chain-timer stopped: this worker stops" in output, output
        assert re.search(r"Child process \[\d+\] died", output), output
        assert len(re.findall(r"Started server process", output)) == 3, output
        answers: list[int] = []
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for _ in range(400):
                with contextlib.suppress(httpx.TransportError):
                    answers = [(await client.get("/readyz")).status_code for _ in range(6)]
                    if answers == [200] * 6:
                        break
                await asyncio.sleep(0.05)
            assert answers == [200] * 6
        assert server.process is not None and server.process.poll() is None
    finally:
        server.stop()
