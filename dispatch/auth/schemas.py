from __future__ import annotations

from pydantic import Field

from dispatch.auth.models import Role
from dispatch.schemas import Flag, LocalTime, Schema, ShortName


class TokenOut(Schema):
    access_token: str
    token_type: str = "bearer"
    expires_at: LocalTime
    # The token's term in seconds (OAuth2's expires_in): a page renews the login once half of
    # it has passed since the token came, counted on its own clock (a difference of readings,
    # right whatever date the device is set to).
    expires_in: int
    # When the login ends however often it is renewed (DISPATCH_LOGIN_MAX_AGE_S from the
    # password login): a token whose expires_at is this one is the login's last, and the
    # pages say ahead that a new login is due.
    login_expires_at: LocalTime


class UserCreate(Schema):
    name: ShortName = Field(
        description="the login name, shown to others (the console, the audit trail): unique; "
        "surrounding whitespace is dropped; no control characters"
    )
    password: str = Field(min_length=8, max_length=256)
    role: Role
    team_id: str | None = Field(default=None, max_length=32)


class UserOut(Schema):
    id: str
    name: str
    role: Role
    team_id: str | None
    disabled: bool
    created_at: LocalTime


class UserPatch(Schema):
    disabled: Flag | None = Field(
        default=None,
        description="a disabled user's tokens stop working at once, and for good: enabling the "
        "user again brings none issued before back",
    )
    password: str | None = Field(
        default=None,
        min_length=8,
        max_length=256,
        description="a new password; every token issued before it stops working",
    )
