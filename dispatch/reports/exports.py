"""The report as CSV (UTF-8 with BOM) and as an Excel workbook with native charts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.chart import BarChart, Reference, ScatterChart, Series
from openpyxl.chart._chart import ChartBase
from openpyxl.chart.axis import ChartLines
from openpyxl.chart.data_source import AxDataSource, StrRef
from openpyxl.chart.shapes import GraphicalProperties
from openpyxl.drawing.line import LineProperties
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from pydantic import TypeAdapter

from dispatch.incidents.models import CATEGORY_LABELS
from dispatch.reports.schemas import (
    Exclusion,
    GroupBy,
    Grouping,
    HistogramBin,
    ReportOut,
    Stat,
    TierFigures,
)
from dispatch.reports.service import (
    NO_VILLAGE,
    TIER_LABELS,
    DetailRow,
    Details,
    Histogram,
    histogram_bins,
)
from dispatch.rosters.files import csv_bytes, sheet_text, workbook_bytes
from dispatch.schemas import DISPLAY_TZ

SHEET_TITLES = {
    GroupBy.TIER: "按梯队",
    GroupBy.TEAM: "按联防队",
    GroupBy.VILLAGE: "按村(社区)",
    GroupBy.DAY: "按日",
    GroupBy.WEEK: "按周",
    GroupBy.MONTH: "按月",
}
# The first column of a grouping's sheet. By tier it is the group, next to the figures' own
# 梯队 column: two columns of one name would leave a reader guessing which is which.
GROUP_LABELS = {
    GroupBy.TIER: "分组(梯队)",
    GroupBy.TEAM: "联防队",
    GroupBy.VILLAGE: "村(社区)",
    GroupBy.DAY: "日期",
    GroupBy.WEEK: "周",
    GroupBy.MONTH: "月份",
}
STATUS_LABELS = {"open": "处置中", "closed": "已结案"}
OUTCOME_LABELS = {
    "met": "达标",
    "breached": "超时",
    "cancelled": "取消(不判定)",
    "pending": "未到时限",
}
# Why a measurement has no arrival, from its outcome (the console's words).
REASON_LABELS = {
    "breached": "无人到场",
    "cancelled": "时限前结案，无人需到场",
    "pending": "时限未过",
}
UNCOVERED_REASON = "此处无该梯队覆盖"
TIER_NAMES = {1: "一梯队", 2: "二梯队", 3: "三梯队"}
SEGMENTS = (
    ("time_to_arrival", "到场用时"),
    ("alert_to_delivery", "推送至送达"),
    ("delivery_to_acceptance", "送达至接警"),
    ("acceptance_to_arrival", "接警至到场"),
)
FIGURE_HEADER = [
    "梯队",
    "目标时限(秒)",
    "警情数",
    "有到场",
    "无到场",
    "达标",
    "超时",
    "取消",
    "未到时限",
    "无覆盖",
    "达标率",
    *[f"{label}{stat}" for _, label in SEGMENTS for stat in ("P50(秒)", "P90(秒)", "最长(秒)")],
    # Added after the columns that were there first, so that they keep their places.
    "无覆盖且超时",
    # Per team: how many of the dispatches counted an operator added by hand after their
    # tier's deadline, each timed and judged from its own alert.
    "人工加派(自接警起算)",
]
SHARE_COLUMN = 12  # 1-based column of 达标率 on the grouping sheets (after 分组 and 梯队...)
EXCLUSION_HEADER = ["警情编号", "报警时间", "梯队", "联防队", "结果", "原因"]
# The workbook names the time zone in the header, as in its other time columns; the CSV keeps
# the header its readers look columns up by, and says 北京时间 in its context columns.
LOCAL_TIME_HEADER = "报警时间(北京时间)"
# What the incident was and where: the workbook has them after 原因; the CSV, whose columns are
# only ever added at the end, after 列出条数.
EXCLUSION_PLACE_HEADER = ["类别", "村(社区)", "经度(WGS84)", "纬度(WGS84)"]
# How far each alerted team's alert got: never delivered to a phone is another failure than
# delivered and not accepted. Last in both, after the place.
REACHED_HEADER = "送达情况"
REACHED_LABELS = {
    "not_delivered": "未送达",
    "delivered": "已送达未接警",
    "accepted": "已接警未到场",
}
# A team an operator added by hand after its tier's deadline (人工加派) is judged from its own
# alert: said after its outcome on 警情明细 and after the reason on the exclusions' lists.
FROM_ALERT_NOTE = "（人工加派，自接警起算）"
SHEET_EXCLUSION_HEADER = [
    *[LOCAL_TIME_HEADER if h == "报警时间" else h for h in EXCLUSION_HEADER],
    *EXCLUSION_PLACE_HEADER,
    REACHED_HEADER,
]
# Last in every CSV row: what the file covers, so that a row read alone still says it.
CONTEXT_HEADER = ["统计区间(北京时间)", "筛选条件", "生成时间(北京时间)"]
# Last in every CSV row (columns are only ever added at the end): the chain head the figures
# were computed against, the event log's newest row then, to check the file against the log
# later (GET /api/v1/audit/verification?head=).
CHAIN_HEAD_HEADER = ["记录链头哈希", "记录链头时间(北京时间)"]
NO_CHAIN_HEAD = "无（事件记录为空）"
# After those in the exclusions' file: how many of how many it lists, as the workbook's title
# of the list says, so that a list cut by max_exclusions says so.
LISTED_HEADER = "列出条数"
DETAIL_HEADER = ["警情编号", LOCAL_TIME_HEADER, "村(社区)", "类别", "状态"]
HISTOGRAM_SHEET = "到场时间分布"  # after the tier's name: 一梯队到场时间分布


def _stat_cells(stat: Stat) -> list[Any]:
    return [stat.p50_s, stat.p90_s, stat.max_s]


def seconds_text(value: float) -> str:
    return f"{value:g}"


def target_cell(f: TierFigures) -> Any:
    """The target the row's measurements were judged by; every one of them, when it changed
    within the period."""
    if f.target_s is not None:
        return f.target_s
    return "/".join(seconds_text(t) for t in f.targets_s) + "（期间调整，各按当时时限判定）"


# 达标率: a share to 0.1 %, as the page shows it.
SHARE_FORMAT = "0.0%"
# Shares a spreadsheet shows as 100.0% or 0.0% in SHARE_FORMAT (it rounds half away from zero,
# after taking 15 significant digits: hence the margin of a hair), and what is written for them
# when they have not reached it: 99.9% and 0.1%.
_SHOWN_AS_ALL = 0.9995 - 1e-12
_SHOWN_AS_NONE = 0.0005 + 1e-12
SHARE_SHORT_OF_ALL = 0.999
SHARE_ABOVE_NONE = 0.001


def share_cell(share: float | None) -> float | None:
    """The share as the cell 达标率 holds it: never rounded onto 100 % or 0 % it has not
    reached, as on the page. 2000 met of 2001 (0.9995) would show 100.0%, as if none had
    missed: it is written 0.999 (99.9%); one of 2001 is written 0.001 (0.1%), not 0.0% as if
    none had met. Any other share is written as it is."""
    if share is None:
        return None
    if _SHOWN_AS_ALL <= share < 1:
        return SHARE_SHORT_OF_ALL
    if 0 < share < _SHOWN_AS_NONE:
        return SHARE_ABOVE_NONE
    return share


def figure_cells(f: TierFigures) -> list[Any]:
    cells: list[Any] = [
        TIER_LABELS[f.tier],
        target_cell(f),
        f.incidents,
        f.with_arrival,
        f.without_arrival,
        f.met,
        f.breached,
        f.cancelled,
        f.pending,
        f.uncovered,
        f.share_within_target,
    ]
    for name, _ in SEGMENTS:
        cells += _stat_cells(getattr(f, name))
    cells.append(f.uncovered_breached)
    cells.append(f.judged_from_alert)
    return cells


def _grouping_rows(grouping: Grouping) -> list[list[Any]]:
    return [[group.label, *figure_cells(f)] for group in grouping.groups for f in group.tiers]


def reason_text(e: Exclusion) -> str:
    """Why nobody is on scene, in Chinese, from the outcome and whether any team was alerted;
    of a team added by hand after its tier's deadline, that it was judged from its alert."""
    reason = REASON_LABELS.get(e.outcome, OUTCOME_LABELS.get(e.outcome, e.outcome))
    if e.judged_from_alert:
        # Its deadline is its tier's target after its own alert, not after the report.
        reason += FROM_ALERT_NOTE
    return reason if e.covered else f"{UNCOVERED_REASON}（{reason}）"


def team_text(e: Exclusion) -> str:
    """The team of an exclusion measured per dispatch, or the teams alerted in an incident's
    tier, as the groups by team label them; empty when none was alerted."""
    return e.team_label or "、".join(t.team_label for t in e.alerted_teams)


def reached_text(e: Exclusion) -> str:
    """How far the alert got: of the exclusion's own team (未送达), or of each team alerted in
    the incident's tier (A驻点队：未送达；B机动队：已送达未接警); empty when none was."""
    if e.team_id:
        return "、".join(REACHED_LABELS[t.reached] for t in e.alerted_teams)
    return "；".join(f"{t.team_label}：{REACHED_LABELS[t.reached]}" for t in e.alerted_teams)


def place_cells(e: Exclusion) -> list[Any]:
    """The incident's category in Chinese, its village (未划入村(社区) outside any, as the groups
    by village name it) and its place as numbers, longitude first as the report form gives it."""
    category = CATEGORY_LABELS.get(e.category, e.category) if e.category else ""
    village = (e.village_name or NO_VILLAGE) if e.village_id else NO_VILLAGE
    return [category, village, e.lon, e.lat]


def sheet_cells(e: Exclusion) -> list[Any]:
    """After 原因 on 未到场清单: the place, then how far the alerts got."""
    return [*place_cells(e), reached_text(e)]


def _exclusion_rows(
    exclusions: Sequence[Exclusion],
    time: Callable[[datetime], Any],
    extra: Callable[[Exclusion], Sequence[Any]] = lambda e: (),
) -> list[list[Any]]:
    """The exclusions' rows, their times as ``time`` writes them: text in the CSV, a date-time
    (local_datetime) in the workbook; each followed by ``extra``'s cells."""
    return [
        [
            e.incident_id,
            time(e.reported_at),
            TIER_LABELS[e.tier],
            team_text(e),
            OUTCOME_LABELS.get(e.outcome, e.outcome),
            reason_text(e),
            *extra(e),
        ]
        for e in exclusions
    ]


def local_text(value: datetime) -> str:
    try:
        return value.astimezone(DISPLAY_TZ).strftime("%Y-%m-%d %H:%M:%S")
    except OverflowError:
        # A period bound at the very end of the calendar (to=9999-12-31T23:59:59Z) has no
        # Beijing time: it is written in UTC, and says so.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# The workbook's times: spreadsheet date-times in Beijing time, shown to the second as the CSV
# writes them, so that Excel's and WPS's date filters and sorting work on them.
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
# The first year a spreadsheet has dates for (1900 date system).
FIRST_SHEET_YEAR = 1900


def local_datetime(value: datetime) -> datetime | str:
    """``value`` as a workbook's time cell holds it: the Beijing wall-clock time without its
    zone (a spreadsheet has none; the header says 北京时间), to the whole second as shown
    (a spreadsheet would round 09:00:00.6 to 09:00:01, where the CSV says 09:00:00). A time
    no spreadsheet date can be (before 1900, or with no Beijing time) is its text."""
    try:
        local = value.astimezone(DISPLAY_TZ)
    except OverflowError:
        return local_text(value)
    if local.year < FIRST_SHEET_YEAR:
        return local_text(value)
    return local.replace(tzinfo=None, microsecond=0)


def bound_text(value: datetime) -> str:
    """A period's bound as local_text writes it, with its fraction of a second when it has one.
    The rows' times are cut to the second: an incident at 09:00:00.3 listed in a period to
    09:00:00.5 reads 09:00:00, and an end written 09:00:00（不含） would say it was left out."""
    text = local_text(value)
    if not value.microsecond:
        return text
    fraction = f".{value.microsecond:06d}".rstrip("0")
    if text.endswith(" UTC"):
        return text[: -len(" UTC")] + fraction + " UTC"
    return text + fraction


def period_text(report: ReportOut) -> str:
    return f"{bound_text(report.period_from)} 至 {bound_text(report.period_to)}（不含）"


def filter_text(report: ReportOut) -> str:
    """The filters in words: tier and category in Chinese, the village by name and the team
    as the groups by team label it (a retired team's marked), so that the words say which."""
    chosen, names = report.filters, report.filter_labels
    parts = []
    if chosen.get("tier") is not None:
        parts.append(f"梯队：{TIER_LABELS[int(chosen['tier'])]}")
    if chosen.get("team_id") is not None:
        parts.append(f"联防队：{names.get('team_id', chosen['team_id'])}")
    if chosen.get("village_id") is not None:
        parts.append(f"村(社区)：{names.get('village_id', chosen['village_id'])}")
    if chosen.get("category") is not None:
        parts.append(f"类别：{CATEGORY_LABELS.get(chosen['category'], chosen['category'])}")
    return "；".join(parts) or "无（全部警情）"


def listed_text(report: ReportOut) -> str:
    """How many exclusions are listed of how many (the oldest first)."""
    return f"共{report.exclusions_total}条，列出{len(report.exclusions)}条"


# ---------------------------------------------------------------- CSV


# Exclusions written at a time in the JSON: pydantic writes a batch in one call, which holds
# the GIL (some 1.5 µs an exclusion), so the event loop waits for a batch at most, not the list.
JSON_BATCH = 2000
_EXCLUSIONS = TypeAdapter(list[Exclusion])
_REPORT = TypeAdapter(ReportOut)


def report_json(report: ReportOut) -> bytes:
    """The report as the JSON answer, as FastAPI would write it (its exclusions last), for a
    thread of its own: up to a million exclusions, written in batches."""
    head = _REPORT.dump_json(report, exclude={"exclusions"})
    assert head.endswith(b"}")
    written = [head[:-1], b',"exclusions":[']
    listed = report.exclusions
    for start in range(0, len(listed), JSON_BATCH):
        if start:
            written.append(b",")
        # "[...]" less its brackets.
        written.append(_EXCLUSIONS.dump_json(listed[start : start + JSON_BATCH])[1:-1])
    written.append(b"]}")
    return b"".join(written)


def chain_head_cells(report: ReportOut) -> list[str]:
    """The chain head's hash and its time in Beijing time (no head: an empty log)."""
    head = report.chain_head
    if head is None:
        return [NO_CHAIN_HEAD, ""]
    return [head.hash, local_text(head.at)]


def report_csv(report: ReportOut, part: str) -> bytes:
    """One table, its header on the first line; every row ends with what the file covers."""
    context = [period_text(report), filter_text(report), local_text(report.generated_at)]
    head = chain_head_cells(report)
    if part == "exclusions":
        context.append(listed_text(report))
        rows = _exclusion_rows(
            report.exclusions,
            local_text,
            lambda e: [*context, *place_cells(e), reached_text(e), *head],
        )
        header = [
            *EXCLUSION_HEADER,
            *CONTEXT_HEADER,
            LISTED_HEADER,
            *EXCLUSION_PLACE_HEADER,
            REACHED_HEADER,
            *CHAIN_HEAD_HEADER,
        ]
        return csv_bytes(header, rows)
    rows = [
        [SHEET_TITLES[g.by], *row, *context, *head]
        for g in report.groupings
        for row in _grouping_rows(g)
    ]
    return csv_bytes(
        ["分组方式", "分组", *FIGURE_HEADER, *CONTEXT_HEADER, *CHAIN_HEAD_HEADER], rows
    )


# ---------------------------------------------------------------- XLSX

TITLE_FONT = Font(bold=True, size=14)
HEADER_FONT = Font(bold=True)
HEADER_ALIGNMENT = Alignment(horizontal="center", vertical="center", wrap_text=True)


class ReportWorkbook:
    """The workbook, written as it is made (openpyxl's write-only mode: each sheet's rows go to
    a temporary file as they come, not into a cell per value held in memory), with 警情明细
    last, its rows added in batches (add_details) as the database gives them: the memory it
    takes does not grow with the rows. Then ``finish`` gives the file; ``discard`` drops an
    unfinished one. ``fallback_target_s``: the tier's current target, for the histogram's
    line when the period has no measurement of the tier to take it from."""

    def __init__(
        self, report: ReportOut, histogram: Histogram, fallback_target_s: float, details: Details
    ) -> None:
        self.workbook = Workbook(write_only=True)
        self.tiers = details.tiers
        try:
            self._start(report, histogram, fallback_target_s, details)
        except BaseException:
            self.discard()
            raise

    def _start(
        self, report: ReportOut, histogram: Histogram, fallback_target_s: float, details: Details
    ) -> None:
        workbook = self.workbook
        targets = histogram.targets or (fallback_target_s,)
        # The bins of the JSON answer, its overflow bin too.
        bins = histogram_bins(histogram.counts, histogram.bin_s, targets)
        _about(workbook, report, histogram, bins, details)
        for grouping in report.groupings:
            rows = _grouping_rows(grouping)
            sheet, start = _sheet(
                workbook,
                SHEET_TITLES[grouping.by],
                [GROUP_LABELS[grouping.by], *FIGURE_HEADER],
                title=f"响应时间 {SHEET_TITLES[grouping.by]}",
                widths=[28, 18],
            )
            # The share as it reads in SHARE_FORMAT; the CSV keeps it in full, as it has no
            # format.
            share = SHARE_COLUMN - 1
            for row in rows:
                row[share] = share_cell(row[share])
                _append(sheet, row, {share: SHARE_FORMAT})
            if grouping.by == GroupBy.TEAM and rows:
                _compliance_chart(sheet, start, len(rows))
        _histogram(workbook, histogram, bins, targets)
        exclusions, _ = _sheet(
            workbook,
            "未到场清单",
            SHEET_EXCLUSION_HEADER,
            title=f"未到场清单（{listed_text(report)}）",
            widths=[34, 20, 18, 28, 12, 48, 14, 18, 14, 14, 40],
        )
        for row in _exclusion_rows(report.exclusions, local_datetime, sheet_cells):
            _append(exclusions, row)
        header = [*DETAIL_HEADER]
        for tier in details.tiers:
            own = "本队" if details.team_id is not None else ""
            header += [f"{TIER_NAMES[tier]}{own}结果", f"{TIER_NAMES[tier]}{own}用时(秒)"]
            header.append(f"{TIER_NAMES[tier]}时限(秒)")
        self.details, _ = _sheet(
            workbook,
            "警情明细",
            header,
            title=f"警情明细（{detail_text(report, details)}）",
            widths=[34, 20, 18, 12, 10, *([14, 16, 14] * len(details.tiers))],
        )

    def add_details(self, rows: Iterable[DetailRow]) -> None:
        """Rows of 警情明细, after those added before."""
        try:
            for row in rows:
                _append(self.details, _detail_cells(row, self.tiers))
        except BaseException:
            self.discard()
            raise

    def finish(self) -> bytes:
        try:
            return workbook_bytes(self.workbook)
        finally:
            self.discard()

    def discard(self) -> None:
        """Removes what the sheets wrote to temporary files (saving removes its own; this is
        for a workbook given up half made)."""
        for sheet in self.workbook.worksheets:
            writer = getattr(sheet, "_writer", None)
            if writer is None or not os.path.exists(writer.out):
                continue
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(OSError, ValueError):
                writer.cleanup()


def report_xlsx(
    report: ReportOut,
    histogram: Histogram,
    fallback_target_s: float,
    details: Details,
    rows: Iterable[DetailRow],
) -> bytes:
    """The workbook at once, its 警情明细 of ``rows``."""
    book = ReportWorkbook(report, histogram, fallback_target_s, details)
    book.add_details(rows)
    return book.finish()


def _sheet(
    workbook: Workbook,
    name: str,
    header: Sequence[str],
    *,
    title: str,
    widths: Sequence[int],
) -> tuple[WriteOnlyWorksheet, int]:
    """A new sheet with its title row and its header, ready for its rows; and the header's row
    number. The widths (a header's without one: twice its length, at least 10) and the frozen
    header are set first, as write-only mode writes them before the rows."""
    sheet = workbook.create_sheet(name)
    for column, text in enumerate(header, start=1):
        width = widths[column - 1] if column <= len(widths) else max(10, 2 * len(text))
        sheet.column_dimensions[get_column_letter(column)].width = width
    header_row = 2
    sheet.freeze_panes = f"A{header_row + 1}"
    # A title or header may show a name too (a report's team).
    sheet.append([_styled(sheet, sheet_text(title), font=TITLE_FONT)])
    sheet.append(
        [
            _styled(sheet, sheet_text(text), font=HEADER_FONT, alignment=HEADER_ALIGNMENT)
            for text in header
        ]
    )
    return sheet, header_row


def _styled(sheet: WriteOnlyWorksheet, value: Any, **style: Any) -> Cell:
    cell = WriteOnlyCell(sheet, value)
    for name, setting in style.items():
        setattr(cell, name, setting)
    return cell


def _append(
    sheet: WriteOnlyWorksheet, row: Sequence[Any], formats: Mapping[int, str] | None = None
) -> None:
    """One row: text without what XML cannot hold, and kept as text when it starts with =
    (openpyxl would store a formula: it is the user's text); date-times in DATETIME_FORMAT;
    the numbers of the columns in ``formats`` (0-based) in theirs."""
    cells: list[Any] = []
    for column, value in enumerate(row):
        if isinstance(value, str):
            value = sheet_text(value)
            if value.startswith("="):
                value = _styled(sheet, value, data_type="s")
        elif isinstance(value, datetime):
            value = _styled(sheet, value, number_format=DATETIME_FORMAT)
        elif formats and column in formats and value is not None:
            value = _styled(sheet, value, number_format=formats[column])
        cells.append(value)
    sheet.append(cells)


def histogram_sheet(tier: int) -> str:
    return TIER_NAMES[tier] + HISTOGRAM_SHEET


def detail_text(report: ReportOut, details: Details) -> str:
    """What 警情明细 lists, of how many: "共N起，列出M起", and what the filters narrow it to."""
    return f"共{details.total}起，列出{details.listed}起{detail_scope(report, details)}"


def detail_scope(report: ReportOut, details: Details) -> str:
    """What the sheet 警情明细 lists, when the filters narrow it."""
    if details.team_id is not None:
        name = report.filter_labels.get("team_id", details.team_id)
        return f"；仅{name}被派警的警情，结果与用时为该队自己的到场"
    if len(details.tiers) == 1:
        return f"；仅列{TIER_NAMES[details.tiers[0]]}"
    return ""


def _about(
    workbook: Workbook,
    report: ReportOut,
    histogram: Histogram,
    bins: Sequence[HistogramBin],
    details: Details,
) -> None:
    rows: list[list[Any]] = [
        ["统计区间（北京时间）", period_text(report)],
        ["生成时间（北京时间）", local_datetime(report.generated_at)],
        ["筛选条件", filter_text(report)],
    ]
    head = report.chain_head
    rows += [
        ["记录链头哈希", NO_CHAIN_HEAD if head is None else head.hash],
        ["记录链头时间（北京时间）", "" if head is None else local_datetime(head.at)],
        [
            "记录核验",
            "记录链头为生成本表时事件记录的最新一行；报表页“核验记录”或 "
            "GET /api/v1/audit/verification?head=<记录链头哈希> 可核对该行仍在记录中且记录完整"
            "（dispatch audit verify 亦可）。",
        ],
    ]
    ids = {k: v for k, v in report.filters.items() if k.endswith("_id") and v is not None}
    if ids:
        rows.append(["筛选编号", "，".join(f"{k}={v}" for k, v in ids.items())])
    rows += [
        [
            "百分位算法",
            "最近秩法(nearest-rank)：n个时间从小到大排列，第p百分位取第⌈p×n/100⌉个，"
            "是实际发生过的时间（n为偶数时P50取中间两个中较小的一个）；"
            "按NFPA 1710的做法，各环节分别计算P90。",
        ],
        [
            "目标时限",
            "每起警情各梯队按报警时生效并随警情保存的时限判定，不按现行设置；"
            "期间调整过时限的，“目标时限”列出所有用过的时限，每起仍按其当时的时限判定。",
        ],
        [
            "达标率",
            "达标/(达标+超时)。到场时间恰好等于时限算达标；时限前结案且无人到场为取消，不判定；"
            "时限未过（恰在时限那一刻亦然）为未到时限，不判定。",
        ],
        [
            "无覆盖",
            "该梯队没有任何队伍被派警（辖区无队伍覆盖、覆盖的队伍不在岗，且扩大范围也无队伍）的梯队数，"
            "不论结果。其判定与其他梯队相同：时限前结案为取消，时限未过为未到时限，"
            "否则时限一过即为超时；“无覆盖且超时”为其中超时的个数（已计入“超时”）。",
        ],
        [
            "各环节用时",
            "推送至送达、送达至接警、接警至到场按每次派警计算，只计两端都实际发生的环节："
            "值班员代报到场只记到场，不替手机记送达和接警；队长未接警直接按“已到场”时，"
            "接警（及此前未收到确认的送达）由到场推定，含推定一端的环节不计入"
            "（接口各环节的implied为因此未计入的派警数）。",
        ],
        [
            "扩大范围派警",
            "一梯队无人接警或无一梯队覆盖时按范围扩大派警的队伍，与其他队伍一样按本梯队自报警起算的时限逐队判定。",
        ],
        ["无到场", f"{report.exclusions_total}项，见“未到场清单”"],
        [
            histogram_sheet(histogram.tier),
            f"{TIER_NAMES[histogram.tier]}到场用时，每{histogram.bin_s}秒一组（左开右闭）"
            + _overflow_text(bins),
        ],
        ["警情明细", detail_text(report, details)],
        ["Method", report.method],
    ]
    sheet, _ = _sheet(
        workbook, "说明", ["项目", "内容"], title="响应时间报表（1-3-5分钟）", widths=[22, 120]
    )
    for row in rows:
        _append(sheet, row)


def _compliance_chart(sheet: WriteOnlyWorksheet, header_row: int, count: int) -> None:
    chart = BarChart()
    chart.type = "bar"
    chart.title = "各联防队达标率"
    chart.y_axis.title = "达标率"
    chart.y_axis.numFmt = "0%"
    chart.y_axis.scaling.min = 0
    chart.y_axis.scaling.max = 1
    chart.legend = None
    data = Reference(sheet, min_col=SHARE_COLUMN, min_row=header_row, max_row=header_row + count)
    categories = Reference(sheet, min_col=1, min_row=header_row + 1, max_row=header_row + count)
    chart.add_data(data, titles_from_data=True)
    _text_categories(chart, categories)
    chart.height = max(7.5, 0.8 * count + 3)
    chart.width = 18
    _add_chart(sheet, chart, f"A{header_row + count + 3}")


def _add_chart(sheet: WriteOnlyWorksheet, chart: ChartBase, anchor: str) -> None:
    # The write-only sheet borrows the worksheet's add_chart, which the stubs type by the latter.
    sheet.add_chart(chart, anchor)  # type: ignore[misc]


def _text_categories(chart: BarChart, labels: Reference) -> None:
    # set_categories() refers to labels as numbers; names and bin labels are text.
    for series in chart.series:
        series.cat = AxDataSource(strRef=StrRef(f=str(labels)))


def _overflow_text(bins: Sequence[HistogramBin]) -> str:
    if not bins or not bins[-1].overflow:
        return ""
    return f"；晚于{bins[-1].from_s}秒的到场合为最后一组（{bins[-1].from_s}秒以上）"


def _histogram(
    workbook: Workbook,
    histogram: Histogram,
    bins: Sequence[HistogramBin],
    targets: Sequence[float],
) -> None:
    """The bins as a table and a column chart, with a red line at each target applied."""
    bin_s = histogram.bin_s
    rows: list[list[Any]] = [
        [
            b.from_s,
            b.to_s,
            f"{b.from_s}秒以上" if b.overflow else f"{b.from_s}-{b.to_s}秒",
            b.count,
        ]
        for b in bins
    ]
    tallest = max([r[3] for r in rows] + [1])
    # Each line's two points beside the bins, one line after the other.
    points = [[target, y] for target in targets for y in (0, tallest)]
    named = "、".join(seconds_text(t) for t in targets)
    tier = TIER_NAMES[histogram.tier]
    header = ["区间起(秒,不含)", "区间止(秒,含)", "区间", "次数", "", "时限线x(秒)", "时限线y"]
    sheet, start = _sheet(
        workbook,
        histogram_sheet(histogram.tier),
        header,
        title=f"{tier}到场用时分布（含{named}秒时限线）",
        widths=[12, 12, 14, 10, 4, 12, 10],
    )
    for n in range(max(len(rows), len(points))):
        cells = rows[n] if n < len(rows) else [None] * 4
        point = points[n] if n < len(points) else [None, None]
        _append(sheet, [*cells, None, *point])
    end = start + len(rows)

    bars = BarChart()
    bars.type = "col"
    bars.grouping = "clustered"
    bars.gapWidth = 10
    bars.title = f"{tier}到场用时分布"
    bars.x_axis.title = "到场用时(秒)"
    bars.y_axis.title = "次数"
    bars.y_axis.majorGridlines = ChartLines()
    bars.y_axis.scaling.min = 0
    bars.y_axis.scaling.max = tallest
    bars.add_data(Reference(sheet, min_col=4, min_row=start, max_row=end), titles_from_data=True)
    _text_categories(bars, Reference(sheet, min_col=3, min_row=start + 1, max_row=end))

    # A target's line: a two-point scatter on its own axes, the x axis spanning exactly the
    # bins, so x = 60 falls on the edge between the bins that end and start at 60 s.
    line = ScatterChart()
    line.scatterStyle = "line"
    for n, target in enumerate(targets):
        first = start + 1 + 2 * n
        xs = Reference(sheet, min_col=6, min_row=first, max_row=first + 1)
        ys = Reference(sheet, min_col=7, min_row=first, max_row=first + 1)
        series = Series(ys, xs, title=f"{seconds_text(target)}秒时限")
        series.marker.symbol = "none"
        series.graphicalProperties = GraphicalProperties(
            ln=LineProperties(solidFill="C00000", w=28575)
        )
        line.series.append(series)
    line.x_axis.axId = 500
    line.y_axis.axId = 600
    line.x_axis.crossAx = 600
    line.y_axis.crossAx = 500
    line.x_axis.scaling.min = 0
    # A category each, the overflow bin too: the lines fall where they do on the bins of bin_s.
    line.x_axis.scaling.max = len(rows) * bin_s
    line.y_axis.scaling.min = 0
    line.y_axis.scaling.max = tallest
    line.x_axis.delete = True
    line.y_axis.delete = True
    line.y_axis.crosses = "max"
    bars += line
    bars.width = 24
    bars.height = 10
    _add_chart(sheet, bars, f"I{start}")


def _detail_cells(row: DetailRow, tiers: Sequence[int]) -> list[Any]:
    cells: list[Any] = [
        row.incident_id,
        local_datetime(row.reported_at),
        row.village,
        CATEGORY_LABELS.get(row.category, row.category),
        STATUS_LABELS.get(row.status, row.status),
    ]
    for tier in tiers:
        found = row.tiers.get(tier)
        if found is None:
            cells += ["", None, None]
        else:
            outcome = OUTCOME_LABELS.get(found.outcome, found.outcome)
            if found.from_alert:
                outcome += FROM_ALERT_NOTE
            cells += [outcome, found.elapsed_s]
            cells.append(found.target_s)
    return cells
