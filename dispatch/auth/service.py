"""Accounts, passwords and bearer tokens."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Select, and_, bindparam, delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import store as mailboxes
from alerts.bulk import any_of
from alerts.driver import fetch_rows
from alerts.hub import Hub
from dispatch.auth.models import RevokedToken, Role, User
from dispatch.db import (
    after_commit,
    announce,
    dialect_name,
    new_id,
    row_values,
    table_of,
    upsert_insert,
)
from dispatch.errors import Conflict, InvalidInput, NotFound, Unauthorized

if TYPE_CHECKING:
    # Annotations only: the cache module imports Principal from this one.
    from dispatch.auth.cache import Principals

TOKEN_ALGORITHM = "HS256"


def password_hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


async def hash_password(hasher: PasswordHasher, password: str) -> str:
    # Argon2 takes a tenth of a second of CPU by design: keep it off the event loop.
    return await asyncio.to_thread(hasher.hash, password)


async def _verify_password(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    user_id: str
    name: str
    role: Role
    team_id: str | None
    # The token this principal came with: logout revokes it until it would have expired.
    token_id: str | None = None
    token_expires_at: datetime | None = None
    # The password login the token descends from by renewal (its ``sid``; a token from before
    # logins were carried on is its own login, its ``jti``): logout ends the whole login.
    login_id: str | None = None
    # When that password login was made (``auth_time``; a token from before it was carried
    # counts from its own issue): renewals end at DISPATCH_LOGIN_MAX_AGE_S from it.
    login_at: datetime | None = None
    # The user's token generation the token belongs to (its ``gen``; a token from before it was
    # carried, the user's as read when it was judged): a renewal carries it on, so a renewal
    # racing a disabling or a reset gives a token that is refused as the one renewed is.
    generation: int = 0


class LoginEnded(Unauthorized):
    """The token's login was ended on purpose, not by its term: no renewal or reconnect brings
    it back, and the page says what ended it (each its own ``code``)."""


class LoggedOut(LoginEnded):
    """The token's login was ended by logout: only a new login helps, no renewal."""

    code = "logged_out"


class AccountDisabled(LoginEnded):
    """The token's user is disabled: only the administrator can let him in again."""

    code = "account_disabled"


class PasswordReset(LoginEnded):
    """The token is from before the administrator reset the password: log in with the new one."""

    code = "password_reset"


class EndedByAdministrator(LoginEnded):
    """The token is from before a disabling (the account enabled again since), or its end was
    set in the database: a new login helps."""

    code = "login_ended"


ACCOUNT_DISABLED_DETAIL = "the account was disabled (account disabled): ask your administrator"

# What a disabling or a reset writes in ``users.tokens_ended_by``.
ENDED_BY_DISABLING = "disabled"
ENDED_BY_RESET = "password_reset"


async def create_user(
    session: AsyncSession,
    *,
    name: str,
    password: str,
    role: Role,
    team_id: str | None,
    now: datetime,
    hasher: PasswordHasher,
) -> User:
    if role == Role.LEADER and team_id is None:
        raise InvalidInput("team_id: a leader belongs to one team", field="team_id")
    if role != Role.LEADER and team_id is not None:
        raise InvalidInput("team_id: only leaders belong to a team", field="team_id")
    taken = Conflict(f"name: a user named {name!r} exists already", field="name")
    # Asked first so that a known name costs no hash; the insert below decides, since another
    # request may take the name while the hash runs.
    if await session.scalar(select(User.id).where(User.name == name)) is not None:
        raise taken
    user = User(
        id=new_id(),
        name=name,
        password_hash=await hash_password(hasher, password),
        role=role.value,
        team_id=team_id,
        disabled=False,
        phone=None,
        created_at=now,
        tokens_valid_after=None,
        token_generation=0,
    )
    if not await _insert_unless_named(session, user):
        raise taken
    await mailboxes.open_mailbox(session, user.id)
    return user


async def _insert_unless_named(session: AsyncSession, user: User) -> bool:
    """Insert the user unless the name is taken, committed or not: race-free on both backends
    (PostgreSQL waits for a transaction that holds the name and then skips the row)."""
    insert = upsert_insert(dialect_name(session))
    statement = insert(table_of(User)).on_conflict_do_nothing(index_elements=["name"])
    result = await session.execute(statement, row_values(user))
    return bool(getattr(result, "rowcount", 0))


async def list_users(session: AsyncSession) -> list[User]:
    return list(await session.scalars(select(User).order_by(User.name)))


async def find_user(session: AsyncSession, name: str) -> User | None:
    found: User | None = await session.scalar(select(User).where(User.name == name))
    return found


WRONG_LOGIN_DETAIL = "username or password is wrong"


async def check_password(hasher: PasswordHasher, user: User | None, password: str) -> User:
    """The user, if the password is theirs and the account is enabled; else 401.

    An unknown name, a wrong password and a disabled account with a wrong password get the same
    answer for the same cost (one Argon2 hash each), so neither the answer nor its time tells
    which names exist or which are disabled. Only the right password of a disabled account is
    told so (``AccountDisabled``): the password proved who asks, and he stops retrying it.

    Needs no database session: the slow hash holds no connection while it runs.
    """
    if user is None:
        # Spend the same time as for a known name, so timing does not reveal which names exist.
        await hash_password(hasher, password)
        raise Unauthorized(WRONG_LOGIN_DETAIL)
    # Verified whether or not the account is disabled: the same hash, whatever the answer.
    if not await _verify_password(hasher, user.password_hash, password):
        raise Unauthorized(WRONG_LOGIN_DETAIL)
    if user.disabled:
        raise AccountDisabled(ACCOUNT_DISABLED_DETAIL)
    return user


class Issued(NamedTuple):
    token: str
    expires_at: datetime
    # When the login ends however it is renewed: a token never outlives it.
    login_expires_at: datetime


def issue_token(
    user: User,
    *,
    secret: str,
    ttl_s: int,
    now: datetime,
    max_age_s: int,
    generation: int,
    login_id: str | None = None,
    login_at: datetime | None = None,
) -> Issued:
    """A token for a full term, or for what is left of its login's ``max_age_s``; a renewal
    carries its login on (``login_id``, ``login_at``), a password login (None) starts one.
    ``generation``: the user's token generation as read with the password the login checked
    (a renewal: the renewed token's), so that a disabling or a reset committed meanwhile, in
    the same microsecond or later, ends the token too."""
    started = login_at or now
    login_expires_at = started + timedelta(seconds=max_age_s)
    expires_at = min(now + timedelta(seconds=ttl_s), login_expires_at)
    claims = {
        "sub": user.id,
        # To the microsecond: a password reset refuses tokens issued before it, to the instant.
        "iat": now.timestamp(),
        "exp": int(expires_at.timestamp()),
        "jti": uuid.uuid4().hex,
        "sid": login_id or uuid.uuid4().hex,
        "auth_time": started.timestamp(),
        "gen": generation,
    }
    token = jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM)
    return Issued(token, expires_at, login_expires_at)


async def renew_token(
    session: AsyncSession, token: str, *, secret: str, ttl_s: int, max_age_s: int, now: datetime
) -> Issued:
    """A fresh token, for a full term from now, for one that still holds: what a page open
    through a shift asks for before its login's term ends. Judged from the rows, not from the
    token cache, as a login reads them: a token logged out, of a disabled user or from before a
    password reset is refused, and renewing never brings one back. The token presented stays
    as it was (another tab of the same page may still hold it) and ends at its own expiry or
    with its login: the fresh token carries the login on, so that a logout ends them all."""
    principal = await principal_for_token(session, token, secret=secret, now=now)
    user = await session.get(User, principal.user_id)
    if user is None:  # Removed since the token's row was read.
        raise Unauthorized("the bearer token's user is unknown")
    if user.disabled:  # Disabled since.
        raise AccountDisabled(ACCOUNT_DISABLED_DETAIL)
    if (
        principal.login_at is not None
        and principal.login_at.timestamp() + max_age_s <= now.timestamp()
    ):
        raise Unauthorized("the login is older than its longest term: log in again")
    return issue_token(
        user,
        secret=secret,
        ttl_s=ttl_s,
        now=now,
        max_age_s=max_age_s,
        generation=principal.generation,
        login_id=principal.login_id,
        login_at=principal.login_at,
    )


async def principal_for_token(
    session: AsyncSession,
    token: str,
    *,
    secret: str,
    now: datetime,
    cache: Principals | None = None,
) -> Principal:
    """The user a token speaks for. A disabled or deleted user's tokens, a revoked token and
    tokens issued before a password reset stop working at once: a token not in ``cache``
    reads them, and the changes that end tokens drop the user's entries (``_access_changed``).
    A failed lookup is never cached."""
    cached = cache.get(token) if cache is not None else None
    if cached is not None:
        principal, expires = cached
        _check_expiry(expires, now)
        return principal
    generation = cache.generation if cache is not None else 0
    principal, expires = await _look_up(session, token, secret=secret, now=now)
    if cache is not None:
        cache.put(token, principal, expires, generation)
    return principal


def _check_expiry(expires: float, now: datetime) -> None:
    # Expiry is judged by the server's clock, the same one that issued the token.
    if expires <= now.timestamp():
        raise Unauthorized("the bearer token has expired")


@functools.cache
def _principal_query() -> Select[Any]:
    """A token's user and whether the token was revoked. Built once, of the tables' columns:
    built at each call, the statement cost more of our CPU than its round trip."""
    users, revoked = User.__table__.c, RevokedToken.__table__.c
    jti = bindparam("principal_jti", type_=revoked.jti.type)
    # A logout records the login it ended under the same key as a token (both random hex).
    login = bindparam("principal_login", type_=revoked.jti.type)
    return select(
        users.id,
        users.name,
        users.role,
        users.team_id,
        users.disabled,
        users.tokens_valid_after,
        users.token_generation,
        users.tokens_ended_by,
        exists().where(or_(revoked.jti == jti, revoked.jti == login)).label("revoked"),
    ).where(users.id == bindparam("principal_user", type_=users.id.type))


async def _look_up(
    session: AsyncSession, token: str, *, secret: str, now: datetime
) -> tuple[Principal, float]:
    """The principal and the token's expiry (epoch seconds), read from the token and the rows."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[TOKEN_ALGORITHM],
            # Times are judged by the server clock below, not by the library's wall clock.
            options={
                "verify_exp": False,
                "verify_iat": False,
                "require": ["sub", "exp", "iat", "jti"],
            },
        )
        expires = float(claims["exp"])
        issued = float(claims["iat"])
    except (jwt.InvalidTokenError, TypeError, ValueError):
        raise Unauthorized("the bearer token is invalid") from None
    _check_expiry(expires, now)
    token_id = str(claims["jti"])
    # Tokens from before logins were carried on have no ``sid``: each is a login of its own.
    login_id = claims.get("sid")
    if not isinstance(login_id, str) or not 0 < len(login_id) <= 32:
        login_id = token_id
    # The user's token generation (``gen``); a token from before it was carried has none and
    # is judged by its issue time alone, as it was when it was issued.
    generation = claims.get("gen")
    if generation is not None and (
        not isinstance(generation, int) or isinstance(generation, bool) or generation < 0
    ):
        raise Unauthorized("the bearer token is invalid")
    login_at = claims.get("auth_time", issued)
    if not isinstance(login_at, int | float) or isinstance(login_at, bool):
        login_at = issued
    # One round trip for the user and the revocation; the columns alone, not a mapped User
    # (every websocket's hello asks: a reconnecting town asks thousands of times at once).
    user = (
        await session.execute(
            _principal_query(),
            {
                "principal_user": str(claims["sub"]),
                "principal_jti": token_id,
                "principal_login": login_id,
            },
        )
    ).first()
    if user is not None and user.revoked:
        raise LoggedOut("the bearer token was revoked (logged out)")
    if user is None:
        raise Unauthorized("the bearer token's user is unknown")
    if user.disabled:
        raise AccountDisabled(ACCOUNT_DISABLED_DETAIL)
    # A disabling or a reset counts the generation up: a token of the one before is refused
    # even when issued in the same microsecond (a login racing a reset, a frozen clock).
    # Issue times are still compared, for a token from before ``gen`` and for a
    # ``tokens_valid_after`` set directly in the database.
    stale = generation is not None and generation != user.token_generation
    if stale or (
        user.tokens_valid_after is not None and issued < user.tokens_valid_after.timestamp()
    ):
        if user.tokens_ended_by == ENDED_BY_RESET:
            raise PasswordReset(
                "the password was reset by an administrator (password reset): "
                "log in with the new password"
            )
        raise EndedByAdministrator(
            "the bearer token was issued before the password was reset or the account disabled"
            " (login ended): log in again"
        )
    principal = Principal(
        user.id,
        user.name,
        Role(user.role),
        user.team_id,
        token_id=token_id,
        token_expires_at=datetime.fromtimestamp(expires, UTC),
        login_id=login_id,
        login_at=datetime.fromtimestamp(login_at, UTC),
        generation=user.token_generation if generation is None else generation,
    )
    return principal, expires


USERS_CHANNEL = "dispatch_users"


def _access_changed(
    session: AsyncSession, principals: Principals | None, sockets: Hub | None, user_id: str
) -> None:
    """Once the change commits: forget the user's cached tokens in this process and have the
    user's open sockets here judged again (those whose token no longer holds are closed), and
    tell the other processes to do the same.

    Judged after the commit, not before: a socket judged earlier would read the rows as they
    were. And here, not only when this process hears its own announcement: SQLite has none, and
    a disabled leader's socket stayed open, acknowledging, until its token expired."""
    if principals is not None:
        after_commit(session, partial(principals.drop_user, user_id), refresh=True)
    if sockets is not None:
        # After the tokens are forgotten: the sockets' judgement reads the rows, not the cache.
        after_commit(session, partial(sockets.recheck, user_id), refresh=True)
    announce(session, USERS_CHANNEL, user_id)


async def revoke(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    principals: Principals | None,
    sockets: Hub | None,
    ttl_s: int,
) -> None:
    """Logout: the login stops working, every token renewed from it with the one presented
    (on a shared console, the tab left open and a token taken from it too). The login is kept
    until the last token it may have been renewed to expires: none renewed by the logout
    outlives a full term from it. Records are forgotten by the term as it is set now, not as
    it was at their logout: with ``DISPATCH_TOKEN_TTL_S`` raised since (a process restarted
    with it already renewing while another logged out), a token renewed for the longer term
    is still refused to its end."""
    await forget_ended_logins(session, now, ttl_s=ttl_s)
    if principal.token_expires_at is None:
        return
    login_id = principal.login_id or principal.token_id
    if login_id is None:
        return
    _access_changed(session, principals, sockets, principal.user_id)
    until = max(principal.token_expires_at, now + timedelta(seconds=ttl_s))
    record = await session.get(RevokedToken, login_id)
    if record is None:
        session.add(
            RevokedToken(jti=login_id, user_id=principal.user_id, expires_at=until, revoked_at=now)
        )
    else:
        record.expires_at = max(record.expires_at, until)
        record.revoked_at = now if record.revoked_at is None else max(record.revoked_at, now)
    await session.flush()


async def forget_ended_logins(session: AsyncSession, now: datetime, *, ttl_s: int) -> None:
    """Delete the logouts no token can outlive any more: past the record's own expiry and a
    full term (``ttl_s``, the setting now) from the logout. A record from before the logout's
    time was kept counts from its expiry, which is never before its logout."""
    term = timedelta(seconds=ttl_s)
    revoked = RevokedToken.__table__.c
    await session.execute(
        delete(RevokedToken).where(
            revoked.expires_at <= now,
            or_(
                revoked.revoked_at <= now - term,
                and_(revoked.revoked_at.is_(None), revoked.expires_at <= now - term),
            ),
        )
    )


async def update_user(
    session: AsyncSession,
    user_id: str,
    *,
    disabled: bool | None,
    password: str | None,
    now: datetime,
    hasher: PasswordHasher,
    principals: Principals | None,
    sockets: Hub | None,
) -> User:
    """Disable or enable an account, or reset its password. Disabling and a reset end every
    token issued before them: enabling the account again brings none back."""
    user = await get_user(session, user_id)
    if disabled is not None:
        user.disabled = disabled
    ends_tokens = bool(disabled) or password is not None
    if password is not None:
        user.password_hash = await hash_password(hasher, password)
    if ends_tokens:
        # An account is disabled for a lost or stolen phone, and enabled again for the new
        # one: the old phone's token must stay dead, as after a password reset. Counted up
        # in the database (two changes at once both count), every token before is refused.
        user.tokens_valid_after = now
        user.token_generation = User.token_generation + 1
        # The page of an ended token says which: a disabling when both come at once (the
        # account is shut, whatever its password).
        user.tokens_ended_by = ENDED_BY_DISABLING if disabled else ENDED_BY_RESET
    await session.flush()
    if disabled is not None or password is not None:
        _access_changed(session, principals, sockets, user.id)
    return user


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id!r} does not exist", field="user_id")
    return user


async def leaders_by_team(session: AsyncSession, team_ids: Sequence[str]) -> dict[str, list[str]]:
    """The enabled leaders of each of ``team_ids`` (every report and change of an incident asks)."""
    if not team_ids:
        return {}
    query = leaders_query(dialect_name(session))
    return leaders_from(await fetch_rows(session, query, {"leader_teams": sorted(set(team_ids))}))


def leaders_from(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    leaders: dict[str, list[str]] = {}
    for row in rows:
        if row["team_id"] is not None:
            leaders.setdefault(row["team_id"], []).append(row["id"])
    return leaders


@functools.cache
def leaders_query(dialect: str) -> Select[tuple[str | None, str]]:
    """The query of ``leaders_by_team`` (the teams as ``leader_teams``), to run with a bulk
    write (``write_rows(read=...)``). Built once: it keys the compiled statement a report's
    bulk write carries it in. On PostgreSQL one array parameter, so the statement has one text
    whatever the count."""
    users = table_of(User).c
    return select(users.team_id, users.id).where(
        users.role == Role.LEADER.value,
        any_of(users.team_id, "leader_teams", dialect == "postgresql"),
        users.disabled.is_(False),
    )


# Operators, admins and auditors all watch the same board, so their consoles read one shared
# mailbox: an incident's news is written once for all of them. One mailbox each would make every
# report and every delivery lock and write a row per reader, the rows all reports wait on.
# Auditors see the console read-only; their acks, like anyone's on the board, change nothing.
BOARD_MAILBOX = "board"
BOARD_ROLES = frozenset({Role.OPERATOR, Role.ADMIN, Role.AUDITOR})


def mailbox_of(principal: Principal) -> str | None:
    """The shared mailbox this user's sockets read, or None for the user's own."""
    return BOARD_MAILBOX if principal.role in BOARD_ROLES else None
