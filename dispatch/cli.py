"""The ``dispatch`` command: serve, migrate, manage users."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from dispatch.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    result: int = handler(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dispatch", description="1-3-5 dispatch server")
    commands = parser.add_subparsers()

    serve = commands.add_parser("serve", help="serve the API, websockets and pages")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--demo", action="store_true", help="seed a demo town on first start")
    serve.set_defaults(handler=_serve)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers()
    upgrade = db_commands.add_parser("upgrade", help="apply every pending migration")
    upgrade.set_defaults(handler=_db_upgrade)

    secret = commands.add_parser(
        "secret", help="write the token signing secret to DISPATCH_SECRET_FILE unless it exists"
    )
    secret.set_defaults(handler=_secret)

    users = commands.add_parser("users", help="accounts")
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
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from dispatch import migrate
    from dispatch.observability.logs import uvicorn_log_config

    settings = Settings()
    if args.workers > 1 and settings.is_sqlite:
        # Each process would hold its own hub and timers over one single-writer file.
        print("--workers above 1 needs PostgreSQL (DISPATCH_DATABASE_URL)", file=sys.stderr)
        return 2
    migrate.upgrade(settings.database_url)
    if args.demo:
        _print_demo(settings)
    uvicorn.run(
        "dispatch.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop" if args.workers > 1 else "auto",
        ws="websockets-sansio",
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_per_message_deflate=False,
        ws_max_size=settings.ws_max_frame_bytes,
        proxy_headers=True,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(settings),
    )
    return 0


def _print_demo(settings: Settings) -> None:
    from dispatch.demo import seed_demo

    credentials = Path(settings.secret_file).with_name("demo-credentials.txt")
    accounts = asyncio.run(seed_demo(settings, credentials))
    print(f"Demo town: 清溪镇 (22.847 N, 114.159 E). Accounts (also in {credentials}):")
    for name, role, password in accounts:
        print(f"  {name:<10} {role:<9} {password}")


def _secret(_: argparse.Namespace) -> int:
    from dispatch.runtime import load_secret

    settings = Settings()
    load_secret(settings)
    where = "DISPATCH_SECRET_KEY" if settings.secret_key else settings.secret_file
    print(f"token signing secret in {where}")
    return 0


def _db_upgrade(_: argparse.Namespace) -> int:
    from dispatch import migrate

    migrate.upgrade(Settings().database_url)
    print("database at the newest migration")
    return 0


def _users_add(args: argparse.Namespace) -> int:
    from dispatch.auth.models import Role
    from dispatch.errors import DomainError

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\n")
    try:
        user_id = asyncio.run(_add_user(args.name, Role(args.role), args.team, password))
    except DomainError as error:
        print(f"error: {error.detail}", file=sys.stderr)
        return 1
    print(user_id)
    return 0


async def _add_user(name: str, role: object, team_id: str | None, password: str) -> str:
    from dispatch import migrate
    from dispatch.audit import service as audit
    from dispatch.auth import service as auth
    from dispatch.auth.models import Role
    from dispatch.auth.schemas import UserCreate
    from dispatch.clock import SystemClock
    from dispatch.db import create_engine, create_sessionmaker
    from dispatch.errors import InvalidInput
    from dispatch.teams import service as teams

    settings = Settings()
    await migrate.upgrade_async(settings.database_url)
    assert isinstance(role, Role)
    try:
        UserCreate(name=name, password=password, role=role, team_id=team_id)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    engine = create_engine(settings.database_url)
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


if __name__ == "__main__":
    raise SystemExit(main())
