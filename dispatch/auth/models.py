from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db import Base


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    LEADER = "leader"
    AUDITOR = "auditor"


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"), index=True)
    disabled: Mapped[bool] = mapped_column(default=False)
    # A leader's mobile number, for SMS and robot @-mentions when the phone's page is offline.
    phone: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    # Tokens issued before this moment are refused: set when the password is reset and when
    # the account is disabled (enabling it again must not bring a lost phone's token back).
    tokens_valid_after: Mapped[datetime | None]
    # Counted up by every disabling and password reset, and carried in each token (``gen``):
    # a token of another generation is refused, however close in time it was issued. Read
    # with the password a login checks, so a login racing a reset carries the old count.
    # Filled by the database when left out (a row the release before writes, a bulk insert).
    token_generation: Mapped[int] = mapped_column(server_default="0")
    # What ended the tokens last ("disabled", "password_reset"): a page whose token was ended
    # tells its user what happened and what to do. None: never, or from before it was kept.
    tokens_ended_by: Mapped[str | None] = mapped_column(String(16))


class RevokedToken(Base):
    """A login ended by logout (its id, or a token's from before logins were carried on);
    kept while any token of the login may still hold, by the settings of the day."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # When the logout was made (None: a record from before it was kept): no token of the login
    # issued by then outlives a full term (DISPATCH_TOKEN_TTL_S, as it is now) from it.
    revoked_at: Mapped[datetime | None]
