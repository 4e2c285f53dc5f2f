"""The report as CSV (UTF-8 with BOM) and as an Excel workbook with native charts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.chart import BarChart, Reference, ScatterChart, Series
from openpyxl.chart.axis import ChartLines
from openpyxl.chart.data_source import AxDataSource, StrRef
from openpyxl.chart.shapes import GraphicalProperties
from openpyxl.drawing.line import LineProperties
from openpyxl.worksheet.worksheet import Worksheet

from dispatch.reports.schemas import Exclusion, GroupBy, Grouping, ReportOut, Stat, TierFigures
from dispatch.reports.service import TIER_LABELS, DetailRow
from dispatch.rosters.files import csv_bytes, workbook_bytes, write_sheet
from dispatch.schemas import DISPLAY_TZ

SHEET_TITLES = {
    GroupBy.TIER: "按梯队",
    GroupBy.TEAM: "按联防队",
    GroupBy.VILLAGE: "按村(社区)",
    GroupBy.DAY: "按日",
    GroupBy.WEEK: "按周",
    GroupBy.MONTH: "按月",
}
GROUP_LABELS = {
    GroupBy.TIER: "梯队",
    GroupBy.TEAM: "联防队",
    GroupBy.VILLAGE: "村(社区)",
    GroupBy.DAY: "日期",
    GroupBy.WEEK: "周",
    GroupBy.MONTH: "月份",
}
CATEGORY_LABELS = {
    "violence": "暴力事件",
    "extremism": "个人极端事件",
    "fight": "打架斗殴",
    "robbery": "抢劫抢夺",
    "theft": "盗窃",
    "fire": "火情",
    "dispute": "纠纷",
    "suspicious": "可疑情况",
    "other": "其他",
}
STATUS_LABELS = {"open": "处置中", "closed": "已结案"}
OUTCOME_LABELS = {
    "met": "达标",
    "breached": "超时",
    "cancelled": "取消(不判定)",
    "pending": "未到时限",
}
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
]
SHARE_COLUMN = 12  # 1-based column of 达标率 on the grouping sheets (after 分组 and 梯队...)
EXCLUSION_HEADER = ["警情编号", "报警时间", "梯队", "联防队", "结果", "原因"]
DETAIL_HEADER = [
    "警情编号",
    "报警时间",
    "村(社区)",
    "类别",
    "状态",
    "一梯队结果",
    "一梯队用时(秒)",
    "二梯队结果",
    "二梯队用时(秒)",
    "三梯队结果",
    "三梯队用时(秒)",
]
HISTOGRAM_SHEET = "一梯队到场时间分布"
TARGET_LINE_S = 60


def _stat_cells(stat: Stat) -> list[Any]:
    return [stat.p50_s, stat.p90_s, stat.max_s]


def figure_cells(f: TierFigures) -> list[Any]:
    cells: list[Any] = [
        TIER_LABELS[f.tier],
        f.target_s,
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
    return cells


def _grouping_rows(grouping: Grouping) -> list[list[Any]]:
    return [[group.label, *figure_cells(f)] for group in grouping.groups for f in group.tiers]


def _exclusion_rows(exclusions: Sequence[Exclusion]) -> list[list[Any]]:
    return [
        [
            e.incident_id,
            e.reported_at.astimezone(DISPLAY_TZ).strftime("%Y-%m-%d %H:%M:%S"),
            TIER_LABELS[e.tier],
            e.team_name or "",
            OUTCOME_LABELS.get(e.outcome, e.outcome),
            e.reason,
        ]
        for e in exclusions
    ]


# ---------------------------------------------------------------- CSV


def report_csv(report: ReportOut, part: str) -> bytes:
    if part == "exclusions":
        return csv_bytes(EXCLUSION_HEADER, _exclusion_rows(report.exclusions))
    rows = [[SHEET_TITLES[g.by], *row] for g in report.groupings for row in _grouping_rows(g)]
    return csv_bytes(["分组方式", "分组", *FIGURE_HEADER], rows)


# ---------------------------------------------------------------- XLSX


def report_xlsx(
    report: ReportOut,
    histogram: dict[int, int],
    bin_s: int,
    detail: Sequence[DetailRow],
    detail_total: int,
) -> bytes:
    workbook = Workbook()
    about = workbook.active
    assert about is not None
    about.title = "说明"
    _about(about, report, detail_total, len(detail))
    for grouping in report.groupings:
        sheet = workbook.create_sheet(SHEET_TITLES[grouping.by])
        header = [GROUP_LABELS[grouping.by], *FIGURE_HEADER]
        rows = _grouping_rows(grouping)
        start = write_sheet(
            sheet, header, rows, title=f"响应时间 {SHEET_TITLES[grouping.by]}", widths=[28, 18]
        )
        for row in sheet.iter_rows(min_row=start + 1, min_col=SHARE_COLUMN, max_col=SHARE_COLUMN):
            for cell in row:
                cell.number_format = "0.0%"
        if grouping.by == GroupBy.TEAM and rows:
            _compliance_chart(sheet, start, len(rows))
    _histogram(workbook.create_sheet(HISTOGRAM_SHEET), histogram, bin_s)
    exclusions = workbook.create_sheet("未到场清单")
    title = f"未到场清单（共{report.exclusions_total}条，列出{len(report.exclusions)}条）"
    write_sheet(
        exclusions,
        EXCLUSION_HEADER,
        _exclusion_rows(report.exclusions),
        title=title,
        widths=[34, 20, 18, 28, 12, 48],
    )
    details = workbook.create_sheet("警情明细")
    write_sheet(
        details,
        DETAIL_HEADER,
        [_detail_cells(d) for d in detail],
        title=f"警情明细（共{detail_total}起，列出{len(detail)}起）",
        widths=[34, 20, 18, 12, 10, 12, 14, 12, 14, 12, 14],
    )
    return workbook_bytes(workbook)


def _about(sheet: Worksheet, report: ReportOut, detail_total: int, detail_listed: int) -> None:
    def local(value: Any) -> str:
        return str(value.astimezone(DISPLAY_TZ).strftime("%Y-%m-%d %H:%M:%S"))

    filters = {k: v for k, v in report.filters.items() if v is not None}
    rows: list[list[Any]] = [
        [
            "统计区间（北京时间）",
            f"{local(report.period_from)} 至 {local(report.period_to)}（不含）",
        ],
        ["生成时间", local(report.generated_at)],
        ["筛选条件", ", ".join(f"{k}={v}" for k, v in filters.items()) or "无"],
        [
            "百分位算法",
            "最近秩法(nearest-rank)：n个时间从小到大排列，第p百分位取第⌈p×n/100⌉个，"
            "是实际发生过的时间；按NFPA 1710的做法，各环节分别计算P90。",
        ],
        [
            "达标率",
            "达标/(达标+超时)。到场时间恰好等于时限算达标；时限前结案且无人到场为取消，不判定；"
            "时限未到为未到时限，不判定；无队伍覆盖计为超时并单列。",
        ],
        ["无到场", f"{report.exclusions_total}项，见“未到场清单”"],
        ["警情明细", f"共{detail_total}起，列出{detail_listed}起"],
        ["Method", report.method],
    ]
    write_sheet(sheet, ["项目", "内容"], rows, title="响应时间报表（1-3-5分钟）", widths=[22, 120])


def _compliance_chart(sheet: Worksheet, header_row: int, count: int) -> None:
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
    sheet.add_chart(chart, f"A{header_row + count + 3}")


def _text_categories(chart: BarChart, labels: Reference) -> None:
    # set_categories() refers to labels as numbers; names and bin labels are text.
    for series in chart.series:
        series.cat = AxDataSource(strRef=StrRef(f=str(labels)))


def _histogram(sheet: Worksheet, histogram: dict[int, int], bin_s: int) -> None:
    last = max([*histogram, (TARGET_LINE_S // bin_s) + 2])
    rows: list[list[Any]] = []
    for b in range(last + 1):
        rows.append(
            [b * bin_s, (b + 1) * bin_s, f"{b * bin_s}-{(b + 1) * bin_s}秒", histogram.get(b, 0)]
        )
    tallest = max([r[3] for r in rows] + [1])
    header = ["区间起(秒,不含)", "区间止(秒,含)", "区间", "次数", "", "60秒线x", "60秒线y"]
    start = write_sheet(
        sheet,
        header,
        [[*r, None, None, None] for r in rows],
        title="一梯队到场用时分布（含60秒时限线）",
        widths=[12, 12, 14, 10, 4, 10, 10],
    )
    sheet.cell(row=start + 1, column=6, value=TARGET_LINE_S)
    sheet.cell(row=start + 1, column=7, value=0)
    sheet.cell(row=start + 2, column=6, value=TARGET_LINE_S)
    sheet.cell(row=start + 2, column=7, value=tallest)
    end = start + len(rows)

    bars = BarChart()
    bars.type = "col"
    bars.grouping = "clustered"
    bars.gapWidth = 10
    bars.title = "一梯队到场用时分布"
    bars.x_axis.title = "到场用时(秒)"
    bars.y_axis.title = "次数"
    bars.y_axis.majorGridlines = ChartLines()
    bars.y_axis.scaling.min = 0
    bars.y_axis.scaling.max = tallest
    bars.add_data(Reference(sheet, min_col=4, min_row=start, max_row=end), titles_from_data=True)
    _text_categories(bars, Reference(sheet, min_col=3, min_row=start + 1, max_row=end))

    # The 60 s line: a two-point scatter on its own axes, the x axis spanning exactly the bins,
    # so x = 60 falls on the edge between the bins that end and start at 60 s.
    line = ScatterChart()
    line.scatterStyle = "line"
    xs = Reference(sheet, min_col=6, min_row=start + 1, max_row=start + 2)
    ys = Reference(sheet, min_col=7, min_row=start + 1, max_row=start + 2)
    target = Series(ys, xs, title="60秒时限")
    target.marker.symbol = "none"
    target.graphicalProperties = GraphicalProperties(ln=LineProperties(solidFill="C00000", w=28575))
    line.series.append(target)
    line.x_axis.axId = 500
    line.y_axis.axId = 600
    line.x_axis.crossAx = 600
    line.y_axis.crossAx = 500
    line.x_axis.scaling.min = 0
    line.x_axis.scaling.max = (last + 1) * bin_s
    line.y_axis.scaling.min = 0
    line.y_axis.scaling.max = tallest
    line.x_axis.delete = True
    line.y_axis.delete = True
    line.y_axis.crosses = "max"
    bars += line
    bars.width = 24
    bars.height = 10
    sheet.add_chart(bars, f"I{start}")


def _detail_cells(row: DetailRow) -> list[Any]:
    cells: list[Any] = [
        row.incident_id,
        row.reported_at.astimezone(DISPLAY_TZ).strftime("%Y-%m-%d %H:%M:%S"),
        row.village,
        CATEGORY_LABELS.get(row.category, row.category),
        STATUS_LABELS.get(row.status, row.status),
    ]
    for tier in (1, 2, 3):
        outcome, elapsed = row.tiers.get(tier, ("", None))
        cells += [OUTCOME_LABELS.get(outcome, outcome), elapsed]
    return cells
