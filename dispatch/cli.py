"""The ``dispatch`` command: serve, migrate, manage users."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import getpass
import logging
import math
import multiprocessing
import os
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from dispatch.config import Settings, setting_errors

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    import uvicorn
    from fastapi import FastAPI
    from sqlalchemy.engine import URL

    from dispatch import migrate
    from dispatch.auth.schemas import UserCreate
    from dispatch.runtime import Runtime

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse leaves them to the whole program, whose usage lacks the command's options.
        command: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        result: int = handler(args)
    except ValidationError as error:
        # A bad DISPATCH_ variable: named, one line each, like a bad argument (exit 2).
        if error.title != Settings.__name__:
            raise
        for line in setting_errors(error):
            print(line, file=sys.stderr)
        return 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dispatch", description="1-3-5 dispatch server")
    commands = parser.add_subparsers()

    serve = commands.add_parser(
        "serve",
        help="serve the API, websockets and pages",
        epilog="The database, the signing secret and every other setting come from DISPATCH_ "
        "environment variables (DISPATCH_DATABASE_URL, DISPATCH_SECRET_FILE, ...): see "
        "docs/deploy.md, Settings reference.",
    )
    serve.add_argument(
        "--host",
        type=listen_host,
        default="127.0.0.1",
        help="address to listen on, 0.0.0.0 for every one (default: %(default)s)",
    )
    serve.add_argument(
        "--port", type=port_number, default=8000, help="1-65535 (default: %(default)s)"
    )
    serve.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        help="processes, at least 1; above 1 needs PostgreSQL (default: %(default)s)",
    )
    serve.add_argument("--demo", action="store_true", help="seed a demo town on first start")
    serve.set_defaults(handler=_serve)

    db = commands.add_parser("db", help="database schema")
    db.set_defaults(handler=usage(db))
    db_commands = db.add_subparsers()
    upgrade = db_commands.add_parser("upgrade", help="apply every pending migration")
    upgrade.set_defaults(handler=_db_upgrade)

    secret = commands.add_parser(
        "secret", help="write the token signing secret to DISPATCH_SECRET_FILE unless it exists"
    )
    secret.set_defaults(handler=_secret)

    users = commands.add_parser("users", help="accounts")
    users.set_defaults(handler=usage(users))
    users_commands = users.add_subparsers()
    add = users_commands.add_parser("add", help="add an account; the password is read from stdin")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["admin", "operator", "leader", "auditor"])
    add.add_argument("--team", default=None, help="the team id of a leader")
    add.set_defaults(handler=_users_add)

    from dispatch.audit.cli import add_audit_command
    from dispatch.simulate.cli import add_simulate_command

    add_simulate_command(commands)
    add_audit_command(commands)
    _name_each_command(parser)
    return parser


def _name_each_command(parser: argparse.ArgumentParser) -> None:
    """Each command's parser in the arguments it parses (``command_parser``), the innermost
    winning, so that what it does not take is refused in its own name, with its own usage."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            # What each does, said in the list of commands, is said in its own --help too.
            said = {listed.dest: listed.help for listed in action._get_subactions()}
            for name, command in action.choices.items():
                command.set_defaults(command_parser=command)
                if command.description is None:
                    command.description = said.get(name)
                _name_each_command(command)


def port_number(text: str) -> int:
    """A TCP port to listen on. uvicorn takes any integer and the system keeps its low 16
    bits, so 70000 listened on 4464 and 65536 on 0, which is any free port: a server on a
    port nobody was told of. 0 is refused too for that reason."""
    number = _integer(text)
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: 1 to 65535")
    return number


def listen_host(text: str) -> str:
    """An address (or name) to listen on. One that does not resolve was found by uvicorn only
    after the migrations, as a log line that named no option (``Name or service not known``)."""
    import socket

    if not text:  # every interface, as uvicorn (asyncio's create_server) takes it
        return text
    try:
        socket.getaddrinfo(text, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else "not a host name"
        raise argparse.ArgumentTypeError(
            f"{text!r} is no address to listen on ({reason}): an address of this host such "
            "as 0.0.0.0 (all) or 127.0.0.1, or a name that resolves to one"
        ) from None
    return text


def worker_count(text: str) -> int:
    """Server processes: 0 and below ran one, as if asked for one."""
    number = _integer(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes: at least 1")
    return number


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The handler of a command given without its subcommand: that command's own help."""

    def show(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def _serve(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.workers > 1 and settings.is_sqlite:
        # Each process would hold its own hub and timers over one single-writer file.
        print(
            "error: --workers above 1 needs PostgreSQL: DISPATCH_DATABASE_URL is a SQLite file",
            file=sys.stderr,
        )
        return 2
    problem = database_url_problem(settings.database_url)
    if problem is not None:
        # Said before the secret is made: a refused server leaves no new secret file behind.
        print(f"error: DISPATCH_DATABASE_URL: {problem}", file=sys.stderr)
        return 1
    # Made (or checked) before anything starts: a worker refusing it would be a traceback.
    if signing_secret(settings) is None:
        return 1
    held = serving_lock(settings.database_url)
    if held is False:
        return 1
    try:
        # A database ahead of this release is logged by each serving process as it starts.
        if not upgraded(
            settings.database_url, warn=False, host_timeout_s=settings.db_host_timeout_s
        ):
            return 1
        if args.demo and not _print_demo(settings):
            return 1
        with shared_metrics(args.workers):
            return _run(args, settings)
    finally:
        if isinstance(held, int):
            os.close(held)


@contextlib.contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """Several workers count into files of one directory, made empty now for this server's
    workers alone and removed when it stops, so that any worker's /metrics answers for all of
    them. prometheus_client takes the directory from PROMETHEUS_MULTIPROC_DIR when a worker
    imports it. One worker counts in memory, whatever the variable said.

    A server killed (kill -9, the power lost) never removes its directory: whichever server
    starts next on the host removes those whose server has ended."""
    remove_stale_metrics(Path(tempfile.gettempdir()))
    if workers <= 1:
        os.environ.pop(MULTIPROCESS_VARIABLE, None)
        yield
        return
    directory, held = _metrics_directory()
    os.environ[MULTIPROCESS_VARIABLE] = str(directory)
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)
        os.close(held)


def _metrics_directory() -> tuple[Path, int]:
    """A new metrics directory, and the descriptor of the lock this process holds on the file
    in it for as long as it lives. The system lets the lock go when the process ends however
    it ends, and a process id can be another process's later: the lock, not an id, tells a
    live server's directory. The directory gets its name only once the lock is held, so no
    other server starting meanwhile ever sees it without."""
    import fcntl

    making = Path(tempfile.mkdtemp(prefix=f".{METRICS_PREFIX}"))
    held = os.open(making / METRICS_LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        directory = making.with_name(making.name.removeprefix("."))
        making.rename(directory)
    except BaseException:
        os.close(held)
        shutil.rmtree(making, ignore_errors=True)
        raise
    return directory, held


def remove_stale_metrics(parent: Path) -> None:
    """Remove the metrics directories in ``parent`` whose server has ended (its lock is free).
    Those of live servers, of other users and of releases that kept no lock are left alone."""
    import fcntl

    for directory in parent.glob(f"{METRICS_PREFIX}*"):
        try:
            found = directory.lstat()
            if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
                continue
            lock = os.open(directory / METRICS_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its server lives
        else:
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            os.close(lock)


METRICS_PREFIX = "dispatch-metrics-"
# Held (flock) by the server that made the directory, for as long as it lives.
METRICS_LOCK = "server.lock"
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def serving_lock(database_url: str) -> int | bool:
    """On SQLite, this process's claim to serve the database: an exclusive lock on a file next
    to it, held while the process lives (the system lets it go when the process ends, even
    killed). A second server would split the town between two hubs and two sets of timers
    over one file. Returns the lock's file descriptor, True where no lock is needed
    (PostgreSQL, a file whose directory is missing: refused later), or False, said on stderr,
    when another process serves the database."""
    import fcntl

    path = sqlite_path(database_url)
    if path is None or not path.parent.is_dir():
        return True
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        print(
            f"error: another dispatch server is serving {path} (it holds {lock}): a SQLite "
            "database takes exactly one server process; stop that one first",
            file=sys.stderr,
        )
        return False
    return fd


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until stopped: 0, or CORE_TASK_STOPPED when the process stopped itself because
    its deadline timer or its acknowledgements' recorder stopped."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from dispatch.observability.logs import uvicorn_log_config
    from dispatch.websocket_protocol import WebSocketProtocol

    config = uvicorn.Config(
        "dispatch.cli:served_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop" if args.workers > 1 else "auto",
        ws=WebSocketProtocol,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_per_message_deflate=False,
        ws_max_size=settings.ws_max_frame_bytes,
        proxy_headers=True,
        # Without it one client trickling a body held the stop until the stop timeout's
        # SIGKILL, and the acknowledgements held in memory were never written.
        timeout_graceful_shutdown=settings.shutdown_requests_s,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(settings),
    )
    if args.workers > 1:
        # uvicorn's supervisor; a worker that stops itself is replaced by a new one.
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    server = uvicorn.Server(config)
    SERVING.server, SERVING.status = server, 0
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        SERVING.server = None
    if not server.started:
        sys.exit(STARTUP_FAILURE)
    return SERVING.status


async def stop_when_the_supervisor_is_gone(supervisor: BaseProcess) -> None:
    """A worker of --workers N stops, as on SIGTERM, once the supervisor that started it is
    gone (killed -9, by the OOM killer say): it would serve on unsupervised, a worker of it
    that died replaced by none, and the port it holds refused to the server started again
    ("Address already in use", and so again at every restart) while it lived."""
    # The supervisor holds the other end of this pipe: it reads as closed once that is gone,
    # also when it went before this worker got here.
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(supervisor.sentinel, gone.set)
    try:
        await gone.wait()
    finally:
        loop.remove_reader(supervisor.sentinel)
    log.error("the supervisor (process %s) is gone: this worker stops", supervisor.pid)
    os.kill(os.getpid(), signal.SIGTERM)


# `dispatch serve`'s exit status when the process stopped itself because a background task of
# the alert path stopped (EX_SOFTWARE): a restart policy starts it again (compose's
# `restart: unless-stopped`, `docker run --restart unless-stopped`, systemd's `Restart=`).
CORE_TASK_STOPPED = 70
# How often a serving process looks whether one of those tasks stopped.
CORE_TASK_CHECK_S = 1.0


class Serving:
    """The uvicorn server this process runs itself (one process; not a worker of several),
    and the status it is to exit with."""

    server: uvicorn.Server | None = None
    status = 0


SERVING = Serving()


def served_app() -> FastAPI:
    """The application ``dispatch serve`` runs: dispatch.app's, whose process stops when its
    deadline timer or its acknowledgements' recorder stopped.

    The task is not started again in place: it ends only on a fault of its own (each catches
    the database's errors and tries again), whose state a new process does not carry. Left
    running, a server whose timer stopped took reports and alerted the teams but breached,
    escalated and notified nothing more, and /readyz's 503 restarted nothing: neither Docker
    nor compose restarts an unhealthy container, and a single server had no other to take
    over. Stopped, it shuts down as on SIGTERM (websockets closed with 1012, the
    acknowledgements held written), its restart policy starts it again, and the timer fires
    what fell due meanwhile from the rows."""
    from dispatch.app import create_app

    app = create_app()
    lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def watched(app: FastAPI) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            watches = [asyncio.create_task(stop_when_a_core_task_stops(app.state.runtime))]
            # A worker of --workers N: the process that started it is uvicorn's supervisor.
            supervisor = multiprocessing.parent_process()
            if supervisor is not None:
                watches.append(asyncio.create_task(stop_when_the_supervisor_is_gone(supervisor)))
            try:
                yield state
            finally:
                for watch in watches:
                    watch.cancel()
                await asyncio.gather(*watches, return_exceptions=True)

    app.router.lifespan_context = watched
    return app


async def stop_when_a_core_task_stops(runtime: Runtime) -> None:
    # runtime.stopped is what /readyz answers from, filled by the tasks' own done callbacks
    # (dispatch.app.watch_task); a look each second is nothing beside a deadline's minute.
    while not runtime.stopped:  # noqa: ASYNC110
        await asyncio.sleep(CORE_TASK_CHECK_S)
    stopped = ", ".join(runtime.stopped)
    server = SERVING.server
    if server is not None:
        log.error(
            "background task %s stopped: this process stops, exit status %d, for its restart "
            "policy to start it again",
            stopped,
            CORE_TASK_STOPPED,
        )
        SERVING.status = CORE_TASK_STOPPED
        server.should_exit = True
    else:
        # A worker of --workers N: stopped as by SIGTERM, and replaced by the supervisor.
        log.error("background task %s stopped: this worker stops, and a new one starts", stopped)
        os.kill(os.getpid(), signal.SIGTERM)


def _print_demo(settings: Settings) -> bool:
    """Seed the demo town and print its accounts; or say in one line on stderr why its
    database could not be seeded (its host unheard for DISPATCH_DB_HOST_TIMEOUT_S)."""
    from dispatch.demo import seed_demo

    credentials = Path(settings.secret_file).with_name("demo-credentials.txt")
    try:
        accounts = asyncio.run(seed_demo(settings, credentials))
    except database_errors() as error:
        said = database_error("DISPATCH_DATABASE_URL", settings.database_url, error)
        print(said, file=sys.stderr)
        return False
    print(f"Demo town: 清溪镇 (22.847 N, 114.159 E). Accounts (also in {credentials}):")
    for name, role, password in accounts:
        print(f"  {name:<10} {role:<9} {password}")
    return True


def signing_secret(settings: Settings) -> str | None:
    """The token signing secret (made now if it is to be kept in a file that does not exist
    yet), or None when it cannot be had, said in one line on stderr."""
    from dispatch.runtime import SecretFileError, load_secret

    try:
        return load_secret(settings)
    except SecretFileError as error:
        print(f"error: {error}", file=sys.stderr)
    except OSError as error:
        print(
            f"error: DISPATCH_SECRET_FILE: {error.strerror or error}: {settings.secret_file}",
            file=sys.stderr,
        )
    return None


def _secret(_: argparse.Namespace) -> int:
    settings = Settings()
    if signing_secret(settings) is None:
        return 1
    where = "DISPATCH_SECRET_KEY" if settings.secret_key else settings.secret_file
    print(f"token signing secret in {where}")
    return 0


def _db_upgrade(_: argparse.Namespace) -> int:
    from dispatch.observability.logs import configure_logging

    settings = Settings()
    configure_logging(settings)
    done = migrated(settings.database_url, host_timeout_s=settings.db_host_timeout_s)
    if done is None:
        return 1
    if not done.unknown:  # else left as it is, with the warning logged
        print(upgrade_said(done))
    return 0


def upgrade_said(done: migrate.Upgrade) -> str:
    """What an upgrade did, in one line: an operator reads whether anything changed."""
    from dispatch import migrate

    newest = ", ".join(migrate.heads())
    count = len(done.applied)
    applied = f"{count} migration{'' if count == 1 else 's'}"
    if not done.applied:
        return f"database already at {newest} (the latest): nothing to do"
    if not done.before:
        return f"database created at {newest} ({applied})"
    return f"database upgraded from {', '.join(done.before)} to {newest} ({applied})"


def upgraded(
    database_url: str,
    source: str = "DISPATCH_DATABASE_URL",
    *,
    warn: bool = True,
    host_timeout_s: float | None = None,
) -> bool:
    """Migrate the database, or say in one line on stderr why it cannot be. A database ahead
    of this release is left as it is, with a warning (unless ``warn`` is False)."""
    done = migrated(database_url, source, warn=warn, host_timeout_s=host_timeout_s)
    return done is not None


def migrated(
    database_url: str,
    source: str = "DISPATCH_DATABASE_URL",
    *,
    warn: bool = True,
    host_timeout_s: float | None = None,
) -> migrate.Upgrade | None:
    """Migrate the database: what it was at and what was applied, with the revisions this
    release does not know when a newer release migrated it (left as it is, with a logged
    warning), or None when it cannot be migrated (said in one line on stderr).
    ``host_timeout_s``: how long its host may go unheard before the migration is given up
    (``dispatch.db.create_engine``; TCP's defaults, hours, if None)."""
    from dispatch import migrate

    problem = database_url_problem(database_url)
    if problem is not None:
        print(f"error: {source}: {problem}", file=sys.stderr)
        return None
    try:
        done = migrate.upgrade_database(database_url, host_timeout_s)
    except database_errors() as error:
        print(database_error(source, database_url, error), file=sys.stderr)
        return None
    unknown = done.unknown
    if unknown and warn:
        # Logged, not printed: with DISPATCH_LOG_FORMAT=json a collector reads it as a WARNING.
        log.warning(
            "%s: the database is at revision %s, newer than this release's %s: left as it is "
            "(a newer release migrated it; this one keeps working on it)",
            source,
            ", ".join(unknown),
            ", ".join(migrate.heads()),
        )
    return done


def at_this_release(
    database_url: str,
    source: str = "DISPATCH_DATABASE_URL",
    *,
    host_timeout_s: float | None = None,
) -> bool:
    """Whether the database is at this release's newest migration, found without writing; if
    not, or if it cannot be read (its host unheard for ``host_timeout_s``, as
    ``dispatch.db.create_engine`` has it), said in one line on stderr."""
    from dispatch import migrate
    from dispatch.db import create_engine

    problem = database_url_problem(database_url)
    if problem is not None:
        print(f"error: {source}: {problem}", file=sys.stderr)
        return False

    async def revisions() -> list[str]:
        engine = create_engine(database_url, read_only=True, host_timeout_s=host_timeout_s)
        try:
            return await migrate.current_revisions(engine)
        finally:
            await engine.dispose()

    try:
        current = asyncio.run(revisions())
    except database_errors() as error:
        print(database_error(source, database_url, error), file=sys.stderr)
        return False
    schema = migrate.state_of(current)
    at = ", ".join(current) or "none (an empty database)"
    newest = ", ".join(migrate.heads())
    if schema is migrate.Schema.BEHIND:
        print(
            f"error: {source}: the database is at revision {at}, older than this release's "
            f"{newest}; nothing was changed. Upgrade a copy and check that: copy it (sqlite3 "
            'DB ".backup copy.db", or pg_dump and pg_restore into a new database), then '
            "DISPATCH_DATABASE_URL=<the copy> dispatch db upgrade",
            file=sys.stderr,
        )
        return False
    if schema is migrate.Schema.AHEAD:
        print(
            f"error: {source}: the database is at revision {at}, newer than this release's "
            f"{newest}: check it with the release that migrated it",
            file=sys.stderr,
        )
        return False
    return True


def _users_add(args: argparse.Namespace) -> int:
    from dispatch.auth.models import Role
    from dispatch.errors import DomainError
    from dispatch.observability.logs import configure_logging

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = without_line_ending(password)
    account = _user_account(args.name, Role(args.role), args.team, password)
    if isinstance(account, str):
        print(f"error: {account}", file=sys.stderr)
        return 1
    settings = Settings()
    configure_logging(settings)
    database_url = settings.database_url
    if not upgraded(database_url, host_timeout_s=settings.db_host_timeout_s):
        return 1
    try:
        user_id = asyncio.run(
            _add_user(account.name, account.role, account.team_id, account.password)
        )
    except DomainError as error:
        print(f"error: {error.detail}", file=sys.stderr)
        return 1
    except database_errors() as error:
        print(database_error("DISPATCH_DATABASE_URL", database_url, error), file=sys.stderr)
        return 1
    print(user_id)
    return 0


def without_line_ending(line: str) -> str:
    """A line read from a pipe without the one line ending that ended it, ``\\r\\n`` (a file
    written on Windows, some terminals) as well as ``\\n``. Anything else is the password's,
    spaces at its ends included: a ``\\r`` kept there made a password nobody could type."""
    for ending in ("\r\n", "\n"):
        if line.endswith(ending):
            return line[: -len(ending)]
    return line


def _user_account(name: str, role: object, team_id: str | None, password: str) -> UserCreate | str:
    """The account as the API would take it (its name stripped), or the rules it breaks,
    naming each field and rule but never the values given: one of them is the password."""
    from dispatch.auth.schemas import UserCreate

    try:
        return UserCreate.model_validate(
            {"name": name, "password": password, "role": role, "team_id": team_id}
        )
    except ValidationError as error:
        return "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'account'}: {e['msg']}"
            for e in error.errors(include_url=False, include_context=False, include_input=False)
        )


async def _add_user(name: str, role: object, team_id: str | None, password: str) -> str:
    from dispatch.audit import service as audit
    from dispatch.auth import service as auth
    from dispatch.auth.models import Role
    from dispatch.clock import SystemClock
    from dispatch.db import create_engine, create_sessionmaker
    from dispatch.teams import service as teams

    settings = Settings()
    assert isinstance(role, Role)
    # An operator's command on a host gone dark says so after about this long, not hours.
    engine = create_engine(settings.database_url, host_timeout_s=settings.db_host_timeout_s)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            if team_id is not None:
                await teams.get_team(session, team_id)
            user = await auth.create_user(
                session,
                name=name,
                password=password,
                role=role,
                team_id=team_id,
                now=SystemClock().now(),
                hasher=auth.password_hasher(settings.argon2_time_cost, settings.argon2_memory_kib),
            )
            # The trail names the command line as the actor: whoever can run it owns the box.
            facts = {"name": name, "role": role.value, "team_id": team_id}
            cli = audit.Actor(None, "command line", None, "local")
            row = audit.entry(cli, "cli_add_user", user.created_at, target_id=user.id, data=facts)
            audit.record(session, row)
            return user.id
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- database errors, one line each

DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
URL_FORMS = "sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user:password@host/name"
ENCODED = "write a password's @ : / ? # % percent-encoded (@ as %40, : as %3A, / as %2F)"


def database_url_problem(database_url: str) -> str | None:
    """Why ``database_url`` cannot be one of our databases, found without connecting; None when
    it may be. Never repeats the URL: it may hold a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database_url)
    except ArgumentError:
        return f"not a database URL (expected {URL_FORMS})"
    except ValueError:
        # SQLAlchemy read what follows a ':' as the port: a mistyped port, or the rest of a
        # password after an '@' written as it is. Its message would quote that part.
        return f"not a database URL: its port is not a number (expected {URL_FORMS}); {ENCODED}"
    if "@" in (url.host or "") or (
        url.drivername.startswith("postgresql") and "@" in (url.database or "")
    ):
        # The password ended at its first '@': the rest, read as the host (or after a '/' as
        # the database), would be named, unmasked, by every refusal to connect.
        return f"not a database URL: its host or database name holds an '@': {ENCODED}"
    if url.drivername not in DRIVERS:
        return f"unsupported database {url.drivername!r} (expected {URL_FORMS})"
    for option in url.query:
        refused = url_option_problem(url, option)
        if refused is not None:
            return refused
    if url.drivername.startswith("sqlite"):
        path = sqlite_path(database_url)
        if path is not None and not path.parent.is_dir():
            return f"the directory {path.parent} of the SQLite file does not exist"
    return None


# SQLAlchemy hands asyncpg each option of the URL, as text, as a keyword argument of
# asyncpg.connect, but for this one, the size of its own cache of prepared statements.
SQLALCHEMY_ASYNCPG_OPTIONS = frozenset({"prepared_statement_cache_size"})
# What SQLAlchemy passes on to sqlite3.connect (its pysqlite dialect's own list: the function
# is built in, its signature cannot be read); any other option it drops with only a warning.
SQLITE_OPTIONS = frozenset(
    {"uri", "timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements"}
)
# With uri=true the others go to SQLite in its own URI, which ignores names it does not know.
SQLITE_URI_OPTIONS = frozenset({"vfs", "mode", "cache", "psow", "nolock", "immutable"})
# libpq's names, which managed PostgreSQL providers' connection strings carry.
LIBPQ_HINTS = {
    "sslmode": "asyncpg's is ssl=, with the same values, e.g. ?ssl=require",
    "connect_timeout": "asyncpg's timeout cannot be given in the URL",
}


def url_option_problem(url: URL, option: str) -> str | None:
    """Why the URL's query option ``option`` cannot reach the driver, or None when it does.
    Unchecked, asyncpg refused an unknown one with a TypeError, a traceback, as it first
    connected, and SQLite's driver dropped it with only a warning."""
    from sqlalchemy.util import asbool

    if url.drivername.startswith("sqlite"):
        if option in SQLITE_OPTIONS:
            return None
        if option in SQLITE_URI_OPTIONS and asbool(url.query.get("uri", False)):
            return None
        return (
            f"the option {option!r} is not one SQLite's driver takes (it takes "
            f"{', '.join(sorted(SQLITE_OPTIONS))}; with uri=true also "
            f"{', '.join(sorted(SQLITE_URI_OPTIONS))})"
        )
    keywords = asyncpg_keywords()
    if option in SQLALCHEMY_ASYNCPG_OPTIONS:
        return None
    if option == "command_timeout":
        # The one number asyncpg reads from text itself; a bad one was its ValueError, a
        # traceback, as it first connected.
        return _positive_seconds(option, url.query[option])
    if option in keywords:
        default = keywords[option]
        # asyncpg turns no text into a number or a class: ?timeout=5 failed part-way through
        # connecting with a TypeError. ``loop`` takes an event loop, ``server_settings`` a
        # mapping (ours: ``dispatch.db``).
        if option not in {"loop", "server_settings"} and (
            default is None or isinstance(default, str | bool)
        ):
            return None
        return (
            f"the option {option!r} cannot be given in the URL: the PostgreSQL driver (asyncpg) "
            "takes it as a number or an object, not as text"
        )
    hint = LIBPQ_HINTS.get(option, "see the keyword arguments of asyncpg.connect")
    return f"the option {option!r} is not one the PostgreSQL driver (asyncpg) takes; {hint}"


def _positive_seconds(option: str, given: str | tuple[str, ...]) -> str | None:
    values = (given,) if isinstance(given, str) else given
    for value in values:
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds > 0):
            return f"the option {option!r} must be a number of seconds greater than 0"
    return None


def asyncpg_keywords() -> dict[str, object]:
    """asyncpg.connect's keyword arguments and their defaults, read from its signature, so
    that they follow the installed asyncpg."""
    import inspect

    import asyncpg

    parameters = inspect.signature(asyncpg.connect).parameters.values()
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {p.name: p.default for p in parameters if p.kind in keyword}


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases, memory and ``file:`` URIs."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError):  # refused by database_url_problem, in its words
        return None
    if not url.drivername.startswith("sqlite") or url.query.get("uri"):
        return None
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return Path(url.database)


def safe_url(database_url: str) -> str:
    """The URL with its password hidden, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable)"


def database_errors() -> tuple[type[BaseException], ...]:
    """What opening, migrating or querying an unusable database raises."""
    import asyncpg
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, DBAPIError

    return (DBAPIError, ArgumentError, CommandError, asyncpg.PostgresError, OSError, TimeoutError)


def database_error(source: str, database_url: str, error: BaseException) -> str:
    """One line naming where the URL came from and the cause, without the URL's password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError

    cause: BaseException = error
    if isinstance(error, DBAPIError) and error.orig is not None:
        cause = error.orig
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else type(cause).__name__
    with contextlib.suppress(ArgumentError):
        password = make_url(database_url).password
        if password:
            text = text.replace(str(password), "***")
    if isinstance(error, TimeoutError) and not lines:
        text = "timed out connecting"
    elif _given_up_by_the_system(error):
        # Its other end went unheard for DISPATCH_DB_HOST_TIMEOUT_S (dispatch.db's
        # give_up_after): the driver says only that the connection closed.
        text = (
            f"{text}: the database's host was heard nothing from for DISPATCH_DB_HOST_TIMEOUT_S "
            "(the host down or the network to it cut)"
        )
    return f"error: {source} ({safe_url(database_url)}): {text}"


def _given_up_by_the_system(error: BaseException) -> bool:
    """Whether what caused ``error`` (through the driver's and SQLAlchemy's wrappings) is the
    system giving a connection up, ETIMEDOUT: TCP's keepalive probes or unacknowledged data
    went unanswered. A timeout of asyncio's has no errno."""
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, TimeoutError) and cause.errno == errno.ETIMEDOUT:
            return True
        cause = cause.__cause__
    return False


if __name__ == "__main__":
    raise SystemExit(main())
