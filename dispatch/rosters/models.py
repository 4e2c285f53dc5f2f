from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from alerts.models import JSONType
from dispatch.db import Base


class RosterKind(StrEnum):
    """The plan's four rosters (attachments 2-5)."""

    EMERGENCY = "emergency"  # 应急联防队伍人员花名册: the tier-1 teams that are dispatched
    AREA = "area"  # 区域联防队伍人员花名册
    VILLAGE_PATROL = "village_patrol"  # 村(社区)专职治安联防队人员花名册
    WATCH = "watch"  # 治安守望队伍人员花名册


class MemberRole(StrEnum):
    LEADER = "leader"
    DEPUTY = "deputy"
    STEEL_FORK = "steel_fork"
    SHIELD = "shield"
    BATON = "baton"
    AUXILIARY_POLICE_DRIVER = "auxiliary_police_driver"
    GUARD = "guard"
    # The plain member of a patrol or watch team, which has no equipment roles.
    MEMBER = "member"


ROLE_LABELS = {
    MemberRole.LEADER: "队长",
    MemberRole.DEPUTY: "副队长",
    MemberRole.STEEL_FORK: "钢叉手",
    MemberRole.SHIELD: "盾牌手",
    MemberRole.BATON: "警棍手",
    MemberRole.AUXILIARY_POLICE_DRIVER: "辅警驾驶员",
    MemberRole.GUARD: "保安员",
    MemberRole.MEMBER: "队员",
}

KIND_TITLES = {
    RosterKind.EMERGENCY: "应急联防队伍人员花名册",
    RosterKind.AREA: "区域联防队伍人员花名册",
    RosterKind.VILLAGE_PATROL: "村(社区)专职治安联防队人员花名册",
    RosterKind.WATCH: "治安守望队伍人员花名册",
}


_OF_A_TEAM = text("team_id IS NOT NULL")
_OF_NO_TEAM = text("team_id IS NULL")


class RosterMember(Base):
    __tablename__ = "roster_members"
    # A phone number is on a team's roster once. A dispatched team (the emergency roster's) is
    # its team_id, whatever it is named now; any other roster's team is its roster and 队伍名称,
    # and that index also serves every lookup by roster and team, its leading columns.
    __table_args__ = (
        Index(
            "uq_roster_members_team_phone",
            "team_id",
            "phone",
            unique=True,
            postgresql_where=_OF_A_TEAM,
            sqlite_where=_OF_A_TEAM,
        ),
        Index(
            "uq_roster_members_kind_group_phone",
            "kind",
            "group_name",
            "phone",
            unique=True,
            postgresql_where=_OF_NO_TEAM,
            sqlite_where=_OF_NO_TEAM,
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # 队伍名称: for the emergency roster, the name of the dispatched team (team_id) as it is now:
    # a rename of the team renames its roster (dispatch.teams.service.update_team).
    group_name: Mapped[str] = mapped_column(String(128))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(32))
    id_number: Mapped[str | None] = mapped_column(String(18))
    role: Mapped[str] = mapped_column(String(32))
    unit: Mapped[int | None]
    # 所在单位: the site or enterprise the member comes from.
    site: Mapped[str | None] = mapped_column(String(128))
    # The leader account that speaks for this member, if any.
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), unique=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DutySchedule(Base):
    """A mobile team's duty hours (勤务时段) and the rotation of its units."""

    __tablename__ = "duty_schedules"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    # Minutes after local midnight (Asia/Shanghai); end <= start means the shift crosses midnight,
    # end == start means round the clock.
    start_minute: Mapped[int]
    end_minute: Mapped[int]
    rotation_weeks: Mapped[int]
    # The local date on which units[0] begins its turn.
    rotation_start: Mapped[date]
    units: Mapped[list[int]] = mapped_column(JSONType)
    updated_at: Mapped[datetime]


class IncidentSkip(Base):
    """A team whose zone covered an incident but which was not alerted, and why."""

    __tablename__ = "incident_skips"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), primary_key=True, index=True)
    # The name the team had then: the record stays as it was.
    team_name: Mapped[str] = mapped_column(String(128))
    tier: Mapped[int]
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(255))
    unit: Mapped[int | None]
    at: Mapped[datetime]
