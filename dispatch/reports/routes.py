from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.deps import RuntimeDep, SessionDep, require
from dispatch.errors import Responses, error_response
from dispatch.incidents.models import Category
from dispatch.reports import exports, service
from dispatch.reports.schemas import (
    ArrivalHistogramOut,
    GroupBy,
    IncidentReportOut,
    ReportOut,
)
from dispatch.rosters.files import CSV_TYPE, XLSX_TYPE, download
from dispatch.routing import api_router, file_name
from dispatch.schemas import DISPLAY_TZ, LocalOrAware

router = api_router("/api/v1/reports", tags=["reports"])
Office = Annotated[auth.Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR))]

HISTOGRAM_BIN_S = 10
# The exclusions listed: on screen a first page; a download of the list is the list itself, so
# it holds them all (up to the hard cap) unless fewer were asked for, and says when it is cut.
LISTED_EXCLUSIONS = 1000
MAX_EXCLUSIONS = 1_000_000
_FORMATS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the report: JSON, or a CSV / XLSX download with Chinese headers",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ReportOut"}},
            "text/csv": {"schema": {"type": "string"}},
            XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
        "headers": file_name(when="with format csv or xlsx"),
    }
}


# A record's id: 404 when it names nothing (service.check_filters).
Id = Annotated[str | None, Query(max_length=64)]
_UNKNOWN_FILTER: Responses = {
    404: error_response(404, "team_id or village_id names nothing (the field)")
}
PeriodStart = Annotated[
    LocalOrAware | None,
    Query(
        alias="from",
        description="start of the period, included; a date or a time without offset is "
        "Asia/Shanghai local time (default: 30 days before `to`)",
    ),
]
PeriodEnd = Annotated[
    LocalOrAware | None,
    Query(alias="to", description="end of the period, excluded (default: tomorrow 00:00)"),
]


@router.get("/response-times", response_model=ReportOut, responses={**_FORMATS, **_UNKNOWN_FILTER})
async def response_times(
    runtime: RuntimeDep,
    session: SessionDep,
    _: Office,
    start: PeriodStart = None,
    end: PeriodEnd = None,
    tier: Annotated[int | None, Query(ge=1, le=3)] = None,
    team_id: Id = None,
    village_id: Id = None,
    category: Category | None = None,
    group_by: Annotated[
        list[GroupBy] | None,
        Query(description="repeat for several groupings (one sheet each in XLSX)"),
    ] = None,
    format: Literal["json", "csv", "xlsx"] = "json",
    part: Annotated[
        Literal["figures", "exclusions"], Query(description="which table a CSV holds")
    ] = "figures",
    max_exclusions: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_EXCLUSIONS,
            description=f"exclusions to list (default {LISTED_EXCLUSIONS}; the CSV of the "
            f"exclusions lists them all, up to {MAX_EXCLUSIONS})",
        ),
    ] = None,
    max_incidents: Annotated[
        int, Query(ge=0, le=1_000_000, description="rows of the XLSX sheet 警情明细")
    ] = 50_000,
) -> Any:
    """Response times per group and tier from the raw timestamps; see docs/reports.md."""
    now = runtime.clock.now()
    period = service.local_period(start, end, now)
    filters = service.Filters(period[0], period[1], tier, team_id, village_id, category)
    await service.check_filters(session, filters)
    if max_exclusions is None:
        whole = format == "csv" and part == "exclusions"
        max_exclusions = MAX_EXCLUSIONS if whole else LISTED_EXCLUSIONS
    wanted = list(group_by or [GroupBy.TIER])
    if format == "xlsx":
        # The workbook always carries the tier totals and the per-team chart.
        wanted += [by for by in (GroupBy.TIER, GroupBy.TEAM) if by not in wanted]
    report = await service.response_times(
        session,
        filters,
        wanted,
        now=now,
        targets=runtime.settings.chain_targets,
        max_exclusions=max_exclusions,
    )
    # The answer is written off the event loop, as the workbook is: with every exclusion (up
    # to a million) the CSV and the JSON held it for a second or more, and a leader's tap that
    # came in meanwhile waited, to be stamped that late.
    if format == "json":
        content = await asyncio.to_thread(exports.report_json, report)
        return Response(content, media_type="application/json")
    stamp = now.astimezone(DISPLAY_TZ).strftime("%Y%m%d-%H%M")
    if format == "csv":
        name = "响应时间报表" if part == "figures" else "未到场清单"
        content = await asyncio.to_thread(exports.report_csv, report, part)
        return download(content, CSV_TYPE, f"{name}-{stamp}.csv", f"report-{stamp}.csv")
    histogram = await service.arrival_histogram(session, filters, HISTOGRAM_BIN_S, now)
    details = await service.incident_details(session, filters, max_incidents)
    fallback = runtime.settings.chain_targets[histogram.tier - 1]
    content = await _workbook(session, filters, report, histogram, fallback, details, now)
    return download(content, XLSX_TYPE, f"响应时间报表-{stamp}.xlsx", f"report-{stamp}.xlsx")


async def _workbook(
    session: AsyncSession,
    filters: service.Filters,
    report: ReportOut,
    histogram: service.Histogram,
    fallback_target_s: float,
    details: service.Details,
    now: datetime,
) -> bytes:
    """The workbook, written as it is read, a batch of 警情明细 at a time, off the event loop:
    a sheet of a million rows neither fills the memory nor holds up an alert while it is made.
    One thread of its own writes it all, as openpyxl's streams are made to be resumed by the
    thread that began them."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1, thread_name_prefix="report-workbook") as writer:
        book = await loop.run_in_executor(
            writer, exports.ReportWorkbook, report, histogram, fallback_target_s, details
        )
        try:
            async for rows in service.detail_rows(session, filters, details, now):
                await loop.run_in_executor(writer, book.add_details, rows)
            return await loop.run_in_executor(writer, book.finish)
        except BaseException:
            await loop.run_in_executor(writer, book.discard)
            raise


@router.get("/arrival-histogram", response_model=ArrivalHistogramOut, responses=_UNKNOWN_FILTER)
async def arrival_histogram(
    runtime: RuntimeDep,
    session: SessionDep,
    _: Office,
    start: PeriodStart = None,
    end: PeriodEnd = None,
    tier: Annotated[
        int | None,
        Query(
            ge=1,
            le=3,
            description="the tier whose times are counted (default: tier 1, or filtered by "
            "team the team's own tier, as the workbook's histogram)",
        ),
    ] = None,
    team_id: Id = None,
    village_id: Id = None,
    category: Category | None = None,
    bin_s: Annotated[int, Query(ge=1, le=300, description="width of a bin in seconds")] = (
        HISTOGRAM_BIN_S
    ),
) -> ArrivalHistogramOut:
    """A tier's times to arrival counted in bins closed on the right, as the workbook's chart
    draws them: the numbers behind the console's histogram with its target line(s)."""
    now = runtime.clock.now()
    period = service.local_period(start, end, now)
    filters = service.Filters(period[0], period[1], tier, team_id, village_id, category)
    await service.check_filters(session, filters)
    histogram = await service.arrival_histogram(session, filters, bin_s, now)
    # The targets the period's measurements of the tier were judged by; with none, today's.
    targets = histogram.targets or (runtime.settings.chain_targets[histogram.tier - 1],)
    return ArrivalHistogramOut(
        generated_at=now,
        period_from=filters.start,
        period_to=filters.end,
        filters=filters.as_dict(),
        tier=histogram.tier,
        unit=service.unit_for(GroupBy.TIER, filters),
        target_s=targets[0] if len(targets) == 1 else None,
        targets_s=list(targets),
        bin_s=bin_s,
        n=sum(histogram.counts.values()),
        bins=service.histogram_bins(histogram.counts, bin_s, targets),
    )


@router.get("/incidents/{incident_id}", response_model=IncidentReportOut)
async def incident_report(
    incident_id: str, runtime: RuntimeDep, session: SessionDep, _: Office
) -> IncidentReportOut:
    """One incident for the record: each tier's and each team's outcome, and the whole timeline
    with every event's time and actor."""
    return await service.incident_report(session, incident_id, runtime.clock.now())
