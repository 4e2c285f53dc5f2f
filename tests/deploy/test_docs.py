"""docs/deploy.md and docs/grafana-dashboard.json cannot drift from the code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import re
import shlex
import shutil
import sqlite3 as sqlite
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from dispatch.app import create_app
from dispatch.cli import _parser
from dispatch.config import Settings
from dispatch.deps import SessionDep
from tests.processes import ServerProcess, cli, server_env
from tests.support import World, get_token

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = (ROOT / "docs" / "deploy.md").read_text()


def shown(value: object) -> str:
    """A default as the reference shows it."""
    if value is None or value == ():
        return "(none)"
    if value == "":
        return "(empty)"
    if isinstance(value, tuple):
        return ",".join(shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


SHELLS = ("", "sh", "bash", "shell")


def shell_commands() -> list[tuple[str, str]]:
    """Every command line in the docs' code blocks (continued lines joined), with its file."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        # Each block from its opening fence to its closing one: a block of another language
        # (json) is passed over whole, its closing fence taken for no opening.
        blocks = re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), re.S | re.M)
        for block in (lines for language, lines in blocks if language in SHELLS):
            for line in block.replace("\\\n", " ").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    found.append((path.name, line.strip()))
    return found


def test_every_docker_command_fed_from_stdin_asks_for_no_terminal() -> None:
    """`docker compose exec` allocates a TTY unless told -T, and with stdin redirected it stops
    at once: "the input device is not a TTY"; `docker exec`/`docker run` need -i to pass stdin
    on and must not ask for one (-t)."""
    fed = re.compile(r"<<<|<<|(?<![<0-9])<\s*\S|^.*\|\s*docker ")
    checked = 0
    for name, line in shell_commands():
        for command in re.finditer(r"docker\s+(compose\s+)?(exec|run)\s+((?:-{1,2}\S+\s+)*)", line):
            if not fed.search(line):
                continue
            checked += 1
            options = command.group(3).split()
            flags = "".join(o[1:] for o in options if re.fullmatch(r"-[a-zA-Z]+", o))
            if command.group(1):
                assert "T" in flags or "--no-TTY" in options, f"{name}: {line}"
            else:
                assert "i" in flags or "--interactive" in options, f"{name}: {line}"
                assert "t" not in flags and "--tty" not in options, f"{name}: {line}"
    assert checked >= 3, "the docs' commands fed from stdin were not found"


def test_the_settings_reference_lists_every_variable_with_its_default() -> None:
    documented = dict(re.findall(r"^\| `(DISPATCH_\w+)` \| `([^`]*)` \|", DEPLOY, re.M))
    expected = {
        f"DISPATCH_{name.upper()}": shown(field.default)
        for name, field in Settings.model_fields.items()
    }
    assert documented == expected


async def test_every_metric_is_documented_and_the_dashboard_uses_only_real_ones(
    world: World,
) -> None:
    exposed = {
        family.name
        for family in text_string_to_metric_families((await world.http.get("/metrics")).text)
    }
    documented = set(re.findall(r"^\| `(dispatch_\w+)` \|", DEPLOY, re.M))
    counters = {f"{name}_total" for name in exposed}
    # Families are named without _total; the documentation uses the names Prometheus stores.
    assert {d.removesuffix("_total") for d in documented} >= exposed - {
        "dispatch_fanout_connected",
        "dispatch_fanout_errors",
    }
    assert documented <= exposed | counters
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert exprs
    used = {
        re.sub(r"_(bucket|count|sum|total)$", "", name)
        for expr in exprs
        for name in re.findall(r"\bdispatch_\w+", expr)
    }
    every = exposed | {"dispatch_fanout_connected", "dispatch_fanout_errors"}
    assert used <= every, used - every
    assert {
        "dispatch_time_to_arrival_seconds",
        "dispatch_chain_breaches",
        "dispatch_report_to_delivery_seconds",
        "dispatch_websocket_connections",
    } <= used


def documented_block(after: str) -> str:
    """The first ``sh`` block of docs/deploy.md after the sentence ``after``."""
    found = re.search(re.escape(after) + r".*?```sh\n(.*?)```", DEPLOY, re.S)
    assert found is not None, after
    return found.group(1)


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="needs the sqlite3 command")
async def test_the_documented_sqlite_restore_brings_back_the_backup_after_a_crash(
    tmp_path: Path,
) -> None:
    """Copying the backup over dispatch.db alone kept the crashed server's WAL beside it, and
    SQLite replayed it onto the backup."""
    folder = tmp_path / "var-lib-dispatch"
    folder.mkdir()
    database = folder / "dispatch.db"
    env = server_env(f"sqlite+aiosqlite:///{database}", folder)
    await cli(env, "users", "add", "duty", "--role", "operator", stdin="operator-password\n")
    server = ServerProcess(env, tmp_path / "server.log")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            token = await get_token(http, "duty", "operator-password")

            async def report() -> None:
                body = {"location": {"lon": 114.159, "lat": 22.847}, "category": "fight"}
                headers = {"Authorization": f"Bearer {token}"}
                reply = await http.post("/api/v1/incidents", json=body, headers=headers)
                assert reply.status_code == 201, reply.text

            await report()
            backup = folder / "dispatch-2026-11-28.db"
            sqlite3 = await asyncio.create_subprocess_exec(
                "sqlite3", str(database), f".backup {backup}"
            )
            assert await sqlite3.wait() == 0
            backup_env = {**env, "DISPATCH_DATABASE_URL": f"sqlite+aiosqlite:///{backup}"}
            kept = folder / "dispatch-2026-11-28.checkpoint"
            verified = await cli(backup_env, "audit", "verify", "--checkpoint", str(kept))
            await report()
            await report()
        server.kill()  # a crash: the last commits are in the WAL only
    finally:
        server.stop()
    assert (folder / "dispatch.db-wal").stat().st_size > 0

    restore = documented_block("Restore with the server stopped")
    lines = [line for line in restore.splitlines() if not line.startswith("systemctl ")]
    script = "\n".join(lines).replace("/var/lib/dispatch", str(folder))
    done = await asyncio.create_subprocess_exec(
        "bash", "-euc", script,
        env={**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await done.communicate()
    assert done.returncode == 0, err.decode()
    # The same events, each incident through the chain head it had at the backup.
    said = out.decode().strip().splitlines()
    assert said[:2] == verified.splitlines()[:2]
    assert said[2].startswith("ok: each of the 1 incidents of dispatch-2026-11-28.checkpoint")
    with contextlib.closing(sqlite.connect(database)) as connection:
        assert connection.execute("SELECT count(*) FROM incidents").fetchone() == (1,)
    assert (folder / "before-restore" / "dispatch.db-wal").exists()


async def test_the_error_answers_api_md_shows_are_the_servers(world: World) -> None:
    errors = (ROOT / "docs" / "api.md").read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    schema, beyond = (json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", errors))
    operator = await world.operator()

    async def report(**body: object) -> httpx.Response:
        sent = {"location": {"lon": 114.159, "lat": 22.847}, "category": "fight", **body}
        return await world.http.post("/api/v1/incidents", json=sent, headers=operator.headers)

    reply = await report(location={"lon": 114.16, "lat": 91})
    assert (reply.status_code, reply.json()) == (422, schema)
    reply = await report(location={"lon": 214.16, "lat": 91})
    assert [f["field"] for f in reply.json()["fields"]] == ["location.lon", "location.lat"]
    assert "field" not in reply.json()
    reply = await report(description="a\x00b")
    assert (reply.status_code, reply.json()) == (422, beyond)

    assert "| 405 | `method_not_allowed` |" in errors
    reply = await world.http.delete("/api/v1/incidents", headers=operator.headers)
    assert (reply.status_code, reply.json()["error"]) == (405, "method_not_allowed")
    # Every method of the path, not only those of the first route at it.
    assert reply.headers["Allow"] == "GET, POST"


async def test_a_500_is_the_plain_text_api_md_says_it_is(world: World) -> None:
    """A bug is no error a handler answers: a constraint the database enforces failing (here
    in a route of the test's own, in the request's unit of work) is Starlette's plain-text
    500, logged with its traceback, not a JSON error a client could take for an answer."""
    errors = (ROOT / "docs" / "api.md").read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    assert "Every error answer of the API (`/api/v1/...`) but a 500 (below) is a JSON" in errors
    assert "`Internal Server Error` in plain text" in errors

    async def a_bug(session: SessionDep) -> None:
        # teams.name is NOT NULL: refused by the database for what it was sent.
        await session.execute(text("INSERT INTO teams (id) VALUES ('a-bug')"))

    world.app.add_api_route("/a-bug", a_bug, methods=["POST"])
    logged: list[logging.LogRecord] = []

    class Kept(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(record)

    handler = Kept()
    uvicorn_errors = logging.getLogger("uvicorn.error")
    uvicorn_errors.addHandler(handler)
    try:
        reply = await world.http.post("/a-bug")
    finally:
        uvicorn_errors.removeHandler(handler)
        world.app.router.routes.pop()
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.text == "Internal Server Error"
    (error,) = (r.exc_info[1] for r in logged if r.exc_info)
    assert isinstance(error, IntegrityError), error


def api_md_section(title: str) -> str:
    return (ROOT / "docs" / "api.md").read_text().split(f"\n## {title}", 1)[1].split("\n## ")[0]


async def test_the_ids_api_md_calls_integers_are_the_schemas(world: World) -> None:
    """Ids are strings but for the events' and the audit trail's, which are numbered."""
    schema = (await world.http.get("/openapi.json")).json()

    def integer(declared: dict[str, Any]) -> bool:
        return "integer" in {o.get("type") for o in declared.get("anyOf", [declared])}

    def id_like(name: str) -> bool:
        return name == "id" or name.endswith("_id")

    integers = sorted(
        [
            f"{model}.{name}"
            for model, component in schema["components"]["schemas"].items()
            for name, declared in component.get("properties", {}).items()
            if id_like(name) and integer(declared)
        ]
        + [
            f"{method.upper()} {path} {parameter['name']}"
            for path, methods in schema["paths"].items()
            for method, operation in methods.items()
            for parameter in operation.get("parameters", [])
            if id_like(parameter["name"]) and integer(parameter["schema"])
        ]
    )
    assert integers == [
        "AuditEntryOut.id",
        "AuditPage.next_before_id",
        "BreakOut.event_id",
        "ChainHeadOut.event_id",
        "EventOut.id",
        "GET /api/v1/audit before_id",
    ]
    intro = (ROOT / "docs" / "api.md").read_text().split("\n- [", 1)[0]
    for said in ("an incident event's `id`", "an audit-trail row's `id`", "`next_before_id`"):
        assert said in " ".join(intro.split()), said


async def test_the_routes_api_md_says_need_no_token_are_those_that_take_none(
    world: World,
) -> None:
    schema = (await world.http.get("/openapi.json")).json()
    open_ = {
        f"{method.upper()} {path}"
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if "security" not in operation
    }
    pages = {"GET /console", "GET /console/reports", "GET /m"}
    health = {"GET /healthz", "GET /readyz"}
    assert open_ == {"POST /api/v1/auth/token", "GET /metrics", *health, *pages}
    for label in sorted(open_ - {"POST /api/v1/auth/token"}):
        reply = await world.http.get(label.split(" ", 1)[1])
        assert reply.status_code == 200, label
    said = " ".join(api_md_section("Authentication").split())
    assert "The health checks, `GET /metrics` and the pages (`/console`, `/m`" in said
    assert "need none" in said


async def test_the_refused_name_api_md_shows_is_the_servers(world: World) -> None:
    names = (ROOT / "docs" / "api.md").read_text().split("## Names and texts", 1)[1]
    (shown,) = re.findall(r"```json\n(.*?)\n```", names.split("\n## ", 1)[0])
    admin = await world.admin()
    body = {"name": "\u202e队防联", "kind": "mobile", "location": {"lon": 114.159, "lat": 22.847}}
    reply = await world.http.post("/api/v1/teams", json=body, headers=admin.headers)
    assert (reply.status_code, reply.json()) == (422, json.loads(shown))


def parser_commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], list[str]]]:
    """Every command the parser takes (``("audit", "verify")``) with its options' long names."""
    options = [
        action.option_strings[-1]
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    ]
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if words:
        yield words, options
    for action in subcommands:
        for name, subparser in action.choices.items():
            yield from parser_commands(subparser, (*words, name))


# The options of docker exec and docker run the docs use that take a value.
DOCKER_VALUED = {"--name", "--restart", "--stop-timeout", "-p", "-v", "-e", "-u", "-w"}


def dispatch_commands(line: str) -> list[list[str]]:
    """The arguments of each ``dispatch`` command on a shell line: the program itself
    (``dispatch``, ``.venv/bin/dispatch``, after ``VAR=value`` assignments) or run in a
    container (``docker exec -i dispatch dispatch users add ...``: the one after the
    container's name, not the container ``--name dispatch``)."""
    found = []
    for command in re.split(r"\s(?:\||;|&&|\|\||<<<?|<|>)\s", line):
        if not re.search(r"(?:^|[\s/])dispatch(?:\s|$)", command):
            continue  # no command of ours (a printf's quoted format, a program's output)
        # A substitution, $(date +%F), stands for one word.
        words = shlex.split(re.sub(r"\$\([^)]*\)", "X", command), comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        if words and words[0].rsplit("/", 1)[-1] == "dispatch":
            found.append(words[1:])
        elif words[:1] == ["docker"] and ({"exec", "run"} & set(words)):
            at = next(i for i, word in enumerate(words) if word in ("exec", "run")) + 1
            while at < len(words) and words[at].startswith("-"):
                at += 2 if words[at] in DOCKER_VALUED else 1
            # The container (or image), then the command run in it.
            if words[at + 1 : at + 2] == ["dispatch"]:
                found.append(words[at + 2 :])
    return found


# The simulator's many options are its own page's (docs/performance.md) and its --help's.
OPTIONS_ELSEWHERE = {("simulate",)}


def test_every_command_line_the_docs_show_is_one_dispatch_takes() -> None:
    """A command copied from the docs runs: its subcommand and options are the parser's; and
    every command, and every option but the simulator's, is named somewhere in the docs."""
    commands = [
        (name, words) for name, line in shell_commands() for words in dispatch_commands(line)
    ]
    assert len(commands) >= 10, commands
    for name, words in commands:
        try:
            _parser().parse_args(words)
        except SystemExit:
            pytest.fail(f"{name}: dispatch {' '.join(words)}")

    docs = " ".join(
        path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    )
    said = " ".join(docs.split())
    for command, options in parser_commands(_parser()):
        named = f"dispatch {' '.join(command)}"
        assert named in said, command
        if command[:1] in OPTIONS_ELSEWHERE:
            continue
        for option in options:
            assert re.search(rf"{named} [^`]*{option}\b", said), (command, option)


def named_operations(text: str) -> set[tuple[str, str]]:
    """``METHOD /path`` as the docs name them, path parameters written ``{}``."""
    return {
        (method, re.sub(r"\{[^}]*\}", "{}", path.rstrip(".,")))
        for method, path in re.findall(r"\b(GET|POST|PUT|PATCH|DELETE) `?(/[\w/{}\-.]*)", text)
    }


def test_every_operation_the_docs_name_is_served_and_every_api_operation_is_named() -> None:
    """A route the docs name (by method and path) is one the server takes, and every route of
    the API is named in the docs with its method: api.md, or reports.md and security.md."""
    schema = create_app(Settings(secret_key="k" * 32)).openapi()
    served = {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
        for path, methods in schema["paths"].items()
        for method in methods
    }
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named: set[tuple[str, str]] = set()
    for path in docs:
        for method, route in named_operations(" ".join(path.read_text().split())):
            # api.md and design.md shorten /api/v1/incidents to /incidents where it is clear.
            full = route if (method, route) in served else f"/api/v1{route}"
            if route == "/ws":
                assert method == "GET"
                continue
            assert (method, full) in served, f"{path.name}: {method} {route}"
            named.add((method, full))
    api = {(method, path) for method, path in served if path.startswith("/api/")}
    assert sorted(api - named) == []


def test_the_incident_api_md_shows_has_every_field_of_the_schemas() -> None:
    """The report's 201 body as api.md shows it: the incident, a chain entry and a dispatch,
    each with every field the served schema declares and none other."""
    components = create_app(Settings(secret_key="k" * 32)).openapi()["components"]["schemas"]
    section = api_md_section("Incidents and the 1-3-5 chain")
    (shown,) = re.findall(r"The body:\n\n```json\n(.*?)\n```", section, re.S)
    keys = set(re.findall(r'"(\w+)":', shown))
    declared = {
        name
        for model in ("IncidentOut", "ChainTierOut", "DispatchOut", "LocationOut")
        for name in components[model]["properties"]
    }
    assert keys == declared


def said_default(said: str) -> float | None:
    """The number a setting's mention gives as its default, ``(256 KiB)``, ``(10,000)``,
    ``(20 s)``: None when it gives none (``(required with the URL)``)."""
    found = re.match(r"(\d[\d, ]*(?:\.\d+)?)\s*(KiB|MiB)?", said)
    if found is None:
        return None
    number = float(re.sub(r"[, ]", "", found.group(1)))
    return number * {"KiB": 1024, "MiB": 1024 * 1024}.get(found.group(2) or "", 1)


def test_the_defaults_the_docs_give_in_passing_are_the_settings() -> None:
    """Beyond the reference's table: a setting named with its default in brackets,
    "`DISPATCH_ESCALATION_AFTER_S` (20 s)", anywhere in the docs."""
    defaults = {f"DISPATCH_{name.upper()}": f.default for name, f in Settings.model_fields.items()}
    checked = 0
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = " ".join(path.read_text().split())
        for found in re.finditer(r"(twice )?`(DISPATCH_\w+)`,? \(([^)]{1,40})\)", text):
            twice, name, said = found.groups()
            number = said_default(said)
            if number is None:
                continue
            checked += 1
            expected = defaults[name] * (2 if twice else 1)
            assert number == expected, f"{path.name}: {found.group(0)}: the default is {expected}"
    assert checked >= 20


# The message type, not a test.
NOT_TESTS = {"test_alert"}


def test_every_test_and_file_the_docs_cite_exists() -> None:
    """security.md names the test that pins each control, and the pages name the files that do
    a thing: a test renamed or a file moved left the docs pointing at nothing."""
    tests = "\n".join(path.read_text() for path in (ROOT / "tests").rglob("*.py"))
    defined = set(re.findall(r"^(?:async )?def (test_\w+)", tests, re.M))
    cited_tests: set[str] = set()
    missing = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        cited = set(re.findall(r"`(test_\w+)`", text)) - NOT_TESTS
        cited_tests |= cited
        missing += [f"{path.name}: {name}" for name in sorted(cited - defined)]
        # A path of the checkout (not /opt/dispatch/..., nor what a run writes under var/).
        roots = "tests|dispatch|alerts|geo|bench|web|deploy|migrations|scripts|docs"
        for cited_path in re.findall(rf"(?<![\w/.])((?:{roots})/[\w./\-]*\w)", text):
            if not (ROOT / cited_path).exists():
                missing.append(f"{path.name}: {cited_path}")
    assert len(cited_tests) >= 20
    assert missing == []


def every_help(parser: argparse.ArgumentParser) -> str:
    """What ``--help`` says of the command and of every subcommand under it."""
    said = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            said += "".join(every_help(subparser) for subparser in action.choices.values())
    return said


def test_every_variable_the_code_reads_is_a_setting_or_said_where_to_give_it() -> None:
    """A DISPATCH_ variable read outside the settings (by one command) is named where its
    user looks: the docs or the command's --help."""
    settings = {f"DISPATCH_{name.upper()}" for name in Settings.model_fields}
    read = {
        name
        for package in ("dispatch", "alerts", "geo")
        for source in (ROOT / package).rglob("*.py")
        for name in re.findall(r"\bDISPATCH_[A-Z0-9_]*[A-Z0-9]\b", source.read_text())
    }
    said = every_help(_parser()) + "".join(
        path.read_text() for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    )
    assert sorted(name for name in read - settings if name not in said) == []


def sent_message_types() -> set[str]:
    """The type of every message the server stores for a mailbox, as the code writes it:
    ``Outgoing(mailbox, "alert", ...)``, or a module's constant naming it."""
    found = set()
    for source in (ROOT / "dispatch").rglob("*.py"):
        text = source.read_text()
        for given in re.findall(r"\bOutgoing\(\s*[^,()]+,\s*([\"\w.]+)", text):
            if given.startswith('"'):
                found.add(given.strip('"'))
            else:
                (value,) = re.findall(rf"^{given} = \"([\w.]+)\"$", text, re.M)
                found.add(value)
    return found


def test_every_message_type_and_closing_code_is_the_one_api_md_lists() -> None:
    section = api_md_section("The websocket")
    table = section.split("Message types:", 1)[1].split("\n\n", 2)[1]
    documented = set(re.findall(r"^\| `([\w.]+)` \|", table, re.M))
    assert len(sent_message_types()) >= 7
    assert sent_message_types() == documented
    # The control frames around them, each named in the protocol's steps.
    for control in ("hello", "welcome", "resync", "ack", "ping", "pong"):
        assert f'{{"type": "{control}"' in section, control

    codes = section.split("Closing codes", 1)[1].split("\n\n", 2)[1]
    listed = {int(code) for code in re.findall(r"\b((?:10|40)\d\d)\b", codes)}
    sent: set[int] = set()
    # The protocol's own codes, and the application's (4000-4999) the endpoint closes with.
    for source in (ROOT / "alerts" / "socket.py", ROOT / "dispatch" / "realtime.py"):
        closes = source.read_text()
        sent |= {int(code) for code in re.findall(r"^[A-Z_]+ = ((?:10|40)\d\d)$", closes, re.M)}
    assert len(sent) >= 7 and 4001 in sent
    assert sent <= listed, sent - listed


def answered_error_codes() -> set[str]:
    """Every ``error`` code an answer of the server can carry, as the code writes it: a domain
    error's ``code``, the codes errors.py gives Starlette's and the database's errors."""
    found: set[str] = set()
    for source in (ROOT / "dispatch").rglob("*.py"):
        text = source.read_text()
        found |= set(re.findall(r"^\s+code(?:: ClassVar\[str\])? = \"(\w+)\"$", text, re.M))
    errors = (ROOT / "dispatch" / "errors.py").read_text()
    found |= set(re.findall(r"\"error\": \"(\w+)\"", errors))
    found |= set(re.findall(r"^\s+\d{3}: \"(\w+)\",$", errors, re.M))
    return found


def test_every_error_code_the_server_answers_is_in_api_mds_table() -> None:
    errors = api_md_section("Errors")
    table = {
        (int(status), code)
        for status, code in re.findall(r"^\| (\d{3}) \| `(\w+)` \|", errors, re.M)
    }
    answered = answered_error_codes()
    assert len(answered) >= 14
    assert answered == {code for _, code in table}
    # Each code at the status the table gives it.
    from dispatch import errors as declared
    from dispatch.rosters import files

    for kind in (*vars(declared).values(), *vars(files).values()):
        if isinstance(kind, type) and issubclass(kind, declared.DomainError):
            assert (kind.status, kind.code) in table, kind


def test_the_reports_answers_reports_md_describes_have_every_field_of_the_schemas() -> None:
    components = create_app(Settings(secret_key="k" * 32)).openapi()["components"]["schemas"]
    reports = (ROOT / "docs" / "reports.md").read_text()
    for title, model in (
        ("## Response-time reports", "ReportOut"),
        ("### Arrival histogram", "ArrivalHistogramOut"),
    ):
        section = reports.split(f"\n{title}\n", 1)[1].split("\n#", 1)[0]
        said = set(re.findall(r"[`\"](\w+)[`\"]", section))
        fields = set(components[model]["properties"])
        assert sorted(fields - said) == [], model


def resolves(dotted: str) -> bool:
    """Whether ``dispatch.rosters.duty.leaders_on_turn`` names a module, or something in one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_every_module_and_name_the_docs_cite_is_the_codes() -> None:
    """`dispatch.rosters.duty.leaders_on_turn`, `alerts.store.received`: a function renamed or
    moved left the page that explains it naming nothing."""
    missing = []
    cited = 0
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if path.name == "performance-history.md":
            continue  # a history: it names what was there then
        text = path.read_text()
        for dotted in set(re.findall(r"`((?:dispatch|alerts|geo|bench)\.[\w.]*\w)`", text)):
            if dotted.endswith(".lock"):
                continue  # a file beside the database, dispatch.db.lock
            cited += 1
            if not resolves(dotted):
                missing.append(f"{path.name}: {dotted}")
    assert cited >= 5
    assert missing == []


def test_the_pages_settings_console_md_lists_have_their_defaults() -> None:
    """console.md's own table of the map's settings, beside the reference's in deploy.md."""
    console = (ROOT / "docs" / "console.md").read_text().split("\n## Settings\n", 1)[1]
    defaults = {f"DISPATCH_{name.upper()}": f.default for name, f in Settings.model_fields.items()}
    rows = re.findall(r"^\| ((?:`DISPATCH_\w+`(?:, )?)+) \| ([^|]+) \|", console, re.M)
    assert len(rows) >= 6
    for names, said in rows:
        variables = re.findall(r"`(DISPATCH_\w+)`", names)
        assert all(name in defaults for name in variables), variables
        if len(variables) > 1:
            # The map's first view, told in words ("Qingxi, 15"): its numbers are defaults.
            numbers = set(re.findall(r"\d+(?:\.\d+)?", said))
            assert numbers <= {shown(defaults[name]) for name in variables}, variables
            continue
        value = said.strip().strip("`")
        words = {"none": "(none)", "empty": "(empty)"}
        assert words.get(value, value) == shown(defaults[variables[0]]), variables


def test_every_parameter_and_body_field_of_the_api_is_named_in_the_docs() -> None:
    """What a client sends, each query parameter, header and member of a body, is explained
    somewhere a user reads: a parameter added without a word was found only in the schema."""
    schema = create_app(Settings(secret_key="k" * 32)).openapi()
    docs = " ".join(
        path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    ).lower()
    sent = {
        f"{method.upper()} {path} {parameter['name']}": parameter["name"]
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] in ("query", "header")
    }
    sent |= {
        f"{model}.{name}": name
        for model, component in schema["components"]["schemas"].items()
        if model.endswith(("In", "Create", "Patch"))
        for name in component.get("properties", {})
    }
    assert len(sent) >= 50
    unnamed = [
        label
        for label, name in sent.items()
        if not any(f"{quote}{name.lower()}{after}" in docs for quote in '`"' for after in '`"=')
        and f"{name.lower()}=" not in docs
    ]
    assert unnamed == []
