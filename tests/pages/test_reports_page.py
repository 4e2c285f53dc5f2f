"""The console's report page, end to end in headless Chromium: the API's figures, drawn.

The seeded day is the hand-computed one of tests/reports (tier 1: met 2 of 3, P50 60 s, P90
75 s; four exclusions). The page is read as an auditor would: the figures in its tables must be
the API's, every chart must have drawn, and the downloads must be the server's files.
"""

from __future__ import annotations

import io
import json
import math
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from playwright.async_api import Browser, Locator, Page, Route, expect

from dispatch.db import new_id
from dispatch.schemas import DISPLAY_TZ
from tests.pages.conftest import (
    Opened,
    ask_report,
    desk_context,
    log_in,
    phone_context,
    queries_to,
)
from tests.pages.test_announcements import heard, listen
from tests.pages.test_console_city import CITY_TEAMS, city_teams
from tests.reports.test_report_exactness import (
    TARGETS,
    Case,
    Tier,
    breached_unanswered,
    store,
    us,
)
from tests.reports.test_response_times import (
    AROUND_THE_TARGET,
    near,
    seed,
    seed_around_the_target,
)
from tests.support import QINGXI, World

# The most teams the team filter lists at once (reports/main.js); more are found by typing.
TEAMS_LISTED = 100
COUNTS = ("incidents", "with_arrival", "without_arrival", "met", "breached", "cancelled")
COUNTS += ("pending", "uncovered")
# Each chart's axes with their titles as Chart.js resolved them, in either language: every axis
# has one of the page's own, none is left to a Chart.js default such as a bare "y".
AXES = {
    "zh": {
        "chart-tiers": {"x": "梯队", "y": "达标率 (%)"},
        "chart-teams": {"x": "达标率 (%)", "y": "联防队"},
        "chart-histogram": {"x": "到场用时（秒）", "y": "次数"},
    },
    "en": {
        "chart-tiers": {"x": "Tier", "y": "Within target (%)"},
        "chart-teams": {"x": "Within target (%)", "y": "Team"},
        "chart-histogram": {"x": "Time to arrival (s)", "y": "Count"},
    },
}


def seconds(value: float | None, target: float | None = None) -> str:
    """As the page shows a time: to 0.1 s (from whole microseconds), rounded up, or down when
    on or under its target; in seconds below a minute, from one on as minutes and two-digit
    seconds, from an hour on as hours, two-digit minutes and seconds."""
    if value is None:
        return "—"
    steps = round(value * 1e6) / 1e5
    tenths = math.floor(steps) if target is not None and value <= target else math.ceil(steps)
    if tenths < 600:
        return f"{tenths / 10:.1f} 秒"
    hours, tenths = divmod(tenths, 36000)
    minutes, rest = divmod(tenths, 600)
    if hours:
        return f"{hours} 小时 {minutes:02d} 分 {rest // 10:02d}.{rest % 10} 秒"
    return f"{minutes} 分 {rest // 10:02d}.{rest % 10} 秒"


def share(value: float | None) -> str:
    """As the page shows a share: to 0.1 %, never rounded onto 0 % or 100 % it has not reached."""
    if value is None:
        return "—"
    text = f"{value * 100:.1f}"
    if text == "100.0" and value < 1:
        text = "99.9"
    elif text == "0.0" and value > 0:
        text = "0.1"
    return text + "%"


async def check_row(row: Locator, figures: dict[str, Any]) -> None:
    """One row of the page's tables against the API's figures for the same group and tier."""
    # The targets as JavaScript writes numbers: 60, not 60.0.
    targets = [figures["target_s"]] if figures["target_s"] is not None else figures["targets_s"]
    shown = "/".join(f"{target:g}" for target in targets) + " 秒"
    await expect(row.locator('td[data-field="target_s"]')).to_have_text(
        shown if figures["target_s"] is not None else shown + " *"
    )
    for key in COUNTS:
        await expect(row.locator(f'td[data-field="{key}"]')).to_have_text(str(figures[key]))
    await expect(row.locator('td[data-field="share_within_target"]')).to_have_text(
        share(figures["share_within_target"])
    )
    arrival = figures["time_to_arrival"]
    for stat in ("p50", "p90", "max"):
        await expect(row.locator(f'td[data-field="time_to_arrival.{stat}"]')).to_have_text(
            seconds(arrival[f"{stat}_s"], min(targets))
        )
    for segment in ("alert_to_delivery", "delivery_to_acceptance", "acceptance_to_arrival"):
        s = figures[segment]
        await expect(row.locator(f'td[data-field="{segment}.p90"]')).to_have_text(
            f"{seconds(s['p50_s'])} / {seconds(s['p90_s'])} / {seconds(s['max_s'])}"
        )


async def painted(page: Page, canvas_id: str) -> int:
    """How many pixels of a canvas are not transparent: zero for a chart that never drew."""
    count: int = await page.evaluate(
        """(id) => {
            const canvas = document.getElementById(id);
            const context = canvas.getContext('2d');
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let n = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) n++;
            return n;
        }""",
        canvas_id,
    )
    return count


async def axis_titles(page: Page, canvas_id: str) -> dict[str, str]:
    axes = await page.locator(f"#{canvas_id}").get_attribute("data-axes")
    assert axes is not None, f"{canvas_id} does not say what its axes are"
    titles: dict[str, str] = json.loads(axes)
    return titles


async def test_the_report_page_shows_the_api_figures_with_charts_and_downloads(
    world: World, browser: Browser, contexts: Opened, artifacts: Path, backend: str
) -> None:
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    next_day = (date.fromisoformat(local_day) + timedelta(days=1)).isoformat()
    auditor = await world.account("auditor")
    params = {"from": local_day, "to": next_day, "group_by": ["village", "tier", "team"]}
    api = (
        await world.http.get(
            "/api/v1/reports/response-times", params=params, headers=auditor.headers
        )
    ).json()
    histogram = (
        await world.http.get(
            "/api/v1/reports/arrival-histogram",
            params={"from": local_day, "to": next_day},
            headers=auditor.headers,
        )
    ).json()

    context = await desk_context(browser, contexts, {"width": 1440, "height": 1000})
    page = await context.new_page()
    await log_in(page, world.base_url + "/console/reports", auditor)
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")

    # The seeded day, grouped by village; dates are local, the last one included.
    await ask_report(page, local_day, choose={"group-by": "village"})
    await expect(page.locator("#period")).to_contain_text(f"{local_day} 00:00 至 {next_day} 00:00")

    totals = page.locator("table.totals-table")
    assert [f["tier"] for f in api["totals"]] == [1, 2, 3]
    for figures in api["totals"]:
        await check_row(totals.locator(f'tr[data-tier="{figures["tier"]}"]'), figures)
    # And the hand-computed figures themselves, as the office would read them.
    tier1 = page.locator('.tier-card[data-tier="1"]')
    await expect(tier1.locator(".tier-card-share")).to_have_text("66.7%")
    await expect(tier1).to_contain_text("P50 1 分 00.0 秒 · P90 1 分 15.0 秒 · 最大 1 分 15.0 秒")
    for figures in api["totals"]:
        arrival = figures["time_to_arrival"]
        target = figures["target_s"]
        await expect(page.locator(f'.tier-card[data-tier="{figures["tier"]}"]')).to_contain_text(
            f"P50 {seconds(arrival['p50_s'], target)} · P90 {seconds(arrival['p90_s'], target)} · "
            f"最大 {seconds(arrival['max_s'], target)}"
        )

    by = {g["by"]: g for g in api["groupings"]}
    grouping = page.locator("#grouping")
    await expect(grouping).to_have_attribute("data-by", "village")
    rows = 0
    for group in by["village"]["groups"]:
        for figures in group["tiers"]:
            row = grouping.locator(f'tr[data-key="{group["key"]}"][data-tier="{figures["tier"]}"]')
            await expect(row.locator("th")).to_have_text(group["label"])
            await check_row(row, figures)
            rows += 1
    await expect(grouping.locator("tbody tr")).to_have_count(rows)

    exclusions = page.locator("#exclusions")
    await expect(exclusions).to_have_attribute("data-total", str(api["exclusions_total"]))
    listed = exclusions.locator("tbody tr")
    await expect(listed).to_have_count(len(api["exclusions"]))
    for n, excluded in enumerate(api["exclusions"]):
        await expect(listed.nth(n)).to_have_attribute("data-incident-id", excluded["incident_id"])
    await expect(page.locator("#exclusion-count")).to_have_text("（共 4 条）")

    # The charts: drawn by Chart.js, with the numbers behind them in their data tables.
    for canvas in ("chart-tiers", "chart-teams", "chart-histogram"):
        assert await painted(page, canvas) > 2000, canvas
        assert await axis_titles(page, canvas) == AXES["zh"][canvas]
    await expect(page.locator("#chart-teams")).to_have_attribute(
        "aria-label", "各联防队达标率 · 达标率 (%) · 联防队"
    )
    teams = {g["label"]: share(g["tiers"][0]["share_within_target"]) for g in by["team"]["groups"]}
    team_rows = page.locator("#data-teams tbody tr")
    await expect(team_rows).to_have_count(len(teams))
    for name, value in teams.items():
        await expect(team_rows.filter(has_text=name).locator("td").last).to_have_text(value)
    bins = [f"{b['from_s']}-{b['to_s']}" for b in histogram["bins"] if b["count"]]
    assert bins == ["40-50", "50-60", "70-80"]
    await expect(page.locator("#data-histogram tbody tr td:first-child")).to_have_text(bins)

    await page.screenshot(path=artifacts / f"reports-{backend}.png", full_page=True)

    # Downloads are the server's own files, fetched with the auditor's token.
    async with page.expect_download() as csv_download:
        await page.locator("#dl-csv").click()
    csv_file = await csv_download.value
    assert csv_file.suggested_filename.startswith("响应时间报表")
    csv_path = await csv_file.path()
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert "按村(社区)" in csv_path.read_bytes().decode("utf-8-sig")
    async with page.expect_download() as xlsx_download:
        await page.locator("#dl-xlsx").click()
    book = load_workbook(io.BytesIO((await (await xlsx_download.value).path()).read_bytes()))
    assert {"按村(社区)", "按梯队", "按联防队", "一梯队到场时间分布"} <= set(book.sheetnames)

    # English on request, the same figures.
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("h1")).to_have_text("1-3-5 response-time report")
    await expect(totals.locator("thead")).to_contain_text("Met")
    await expect(tier1.locator(".tier-card-share")).to_have_text("66.7%")
    await expect(tier1).to_contain_text("P50 1 min 00.0 s · P90 1 min 15.0 s · Max 1 min 15.0 s")
    await expect(
        totals.locator('tr[data-tier="1"] td[data-field="time_to_arrival.max"]')
    ).to_have_text("1 min 15.0 s")
    assert await painted(page, "chart-histogram") > 2000
    for canvas, titles in AXES["en"].items():
        assert await axis_titles(page, canvas) == titles
    await expect(page.locator("#chart-histogram")).to_have_attribute(
        "aria-label", "Tier-1 times to arrival · 3 arrivals · Time to arrival (s) · Count"
    )


async def test_a_refused_period_clears_the_figures_of_the_one_before(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    day_before = (date.fromisoformat(local_day) - timedelta(days=1)).isoformat()
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await ask_report(page, local_day)
    result = page.locator("#result")
    await expect(result.locator('.tier-card[data-tier="1"] .tier-card-share')).to_have_text("66.7%")

    # An end before the start: the server refuses the period (4xx), and the figures of the
    # period before must not stay on screen as if they were this one's.
    await ask_report(page, local_day, day_before, state="failed")
    await expect(result).to_be_hidden()
    await expect(page.locator(".tier-card")).to_have_count(0)
    await expect(page.locator("#totals tr, #grouping tr, #exclusions tr")).to_have_count(0)
    await expect(page.locator("#period")).to_have_text("")
    for canvas in ("chart-tiers", "chart-teams", "chart-histogram"):
        assert await painted(page, canvas) == 0, canvas
    status = page.locator("#status")
    await expect(status).to_have_class(re.compile(r"\berror\b"))
    await expect(status).to_contain_text("报表生成失败")
    # The server's reason in the office's words: which date is wrong, not its English.
    await expect(status).to_contain_text("报表生成失败：起始日期不能晚于截止日期")
    await expect(status).not_to_contain_text("period")
    # The reason and what to do are two sentences, not one run on.
    await expect(status).to_contain_text("起始日期不能晚于截止日期。此前的统计结果已清除")

    # Said again in English, still without figures.
    await page.get_by_role("button", name="English").click()
    await expect(status).to_contain_text(
        "The report failed: The start date must not be after the end date."
        " The previous figures were cleared"
    )
    await expect(result).to_be_hidden()

    # A good period again: the figures are back.
    await ask_report(page, local_day, button="Show")
    await expect(result).to_be_visible()
    await expect(result.locator('.tier-card[data-tier="1"] .tier-card-share')).to_have_text("66.7%")
    await expect(status).not_to_have_class(re.compile(r"\berror\b"))
    assert await painted(page, "chart-teams") > 2000


async def test_the_report_page_fits_a_phone_with_teams_by_tier_and_zero_bars_seen(
    world: World, browser: Browser, contexts: Opened, artifacts: Path, backend: str
) -> None:
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    # A response-police team whose name sorts first: the chart still lists it after tier 1 and 2.
    admin = await world.admin()
    renamed = await world.http.patch(
        f"/api/v1/teams/{day.teams['R']['id']}", json={"name": "0处突警力"}, headers=admin.headers
    )
    assert renamed.status_code == 200, renamed.text
    auditor = await world.account("auditor")

    for width in (390, 360):
        context = await desk_context(browser, contexts, {"width": width, "height": 800})
        page = await context.new_page()
        await log_in(page, world.base_url + "/console/reports", auditor)
        await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
        for language in ("zh", "en"):
            if language == "en":
                await page.get_by_role("button", name="English").click()
                await expect(page.locator("h1")).to_have_text("1-3-5 response-time report")
                await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
            else:
                await ask_report(page, local_day)
            for details in await page.locator("details").all():
                await details.evaluate("el => { el.open = true; }")
            page_width = await page.evaluate("() => document.documentElement.scrollWidth")
            assert page_width <= width, (width, language, page_width)
            for chart in await page.locator(".chart-card").all():
                box = await chart.bounding_box()
                assert box is not None and box["x"] + box["width"] <= width, (width, box)
        await page.screenshot(path=artifacts / f"reports-{width}-{backend}.png", full_page=True)

    # The per-team chart and its table: tier 1's teams, then tier 2's, then tier 3's.
    bars = json.loads(await page.locator("#chart-teams").get_attribute("data-bars") or "[]")
    assert [b["label"] for b in bars] == ["A驻点队", "B机动队", "P巡逻警力", "0处突警力"]
    tiers = await page.locator("#data-teams tbody tr td:nth-child(2)").all_text_contents()
    assert tiers == ["Tier 1", "Tier 1", "Tier 2", "Tier 3"]
    # Every judged team has a bar to see, 0% included.
    assert any(b["value"] == 0 for b in bars), bars
    for bar in bars:
        if bar["value"] is not None:
            assert bar["px"] >= 2.5, bar


async def test_a_retired_team_is_offered_after_those_in_service_and_reported_on(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The office pulls a retired team's year: the team filter still offers it, said to be
    retired, after the teams in service."""
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    next_day = (date.fromisoformat(local_day) + timedelta(days=1)).isoformat()
    admin = await world.admin()
    retired = day.teams["A"]["id"]
    reply = await world.http.delete(f"/api/v1/teams/{retired}", headers=admin.headers)
    assert reply.status_code == 204
    auditor = await world.account("auditor")
    api = (
        await world.http.get(
            "/api/v1/reports/response-times",
            params={"from": local_day, "to": next_day, "team_id": retired},
            headers=auditor.headers,
        )
    ).json()
    assert api["filter_names"] == {"team_id": "A驻点队"}

    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", auditor)
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    options = page.locator("#team option")
    await expect(options).to_have_text(
        ["全部", "B机动队", "P巡逻警力", "R处突警力", "A驻点队（已撤销）"]
    )
    assert await options.last.get_attribute("value") == retired

    await ask_report(page, local_day, choose={"team": retired})
    assert [f["tier"] for f in api["totals"]] == [1]
    await check_row(page.locator('table.totals-table tr[data-tier="1"]'), api["totals"][0])
    await expect(page.locator('.tier-card[data-tier="1"] .tier-card-share')).to_have_text("66.7%")

    await page.get_by_role("button", name="English").click()
    await expect(options.last).to_have_text("A驻点队 (retired)")
    await expect(page.locator("#team")).to_have_value(retired)


async def test_retired_namesakes_are_told_apart_in_the_team_filter_as_in_the_report(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Two 甲联防队 were retired on two days and a third serves under the name; two 乙联防队
    were retired at one moment. Each option of the team filter says which team it is as the
    report's rows by team label it: the day a retired namesake was retired, and its id when
    that day was the other's too; in either language."""
    world.long_logins()
    admin = await world.admin()
    operator = await world.operator()
    made: list[dict[str, Any]] = []

    async def team(name: str) -> dict[str, Any]:
        made.append(await world.team("fixed_post", *near(2000 * len(made), 90), name=name))
        return made[-1]

    async def retire(team: dict[str, Any]) -> str:
        reply = await world.http.delete(f"/api/v1/teams/{team['id']}", headers=admin.headers)
        assert reply.status_code == 204, reply.text
        return world.clock.now().astimezone(DISPLAY_TZ).date().isoformat()

    # A name is free again once its team is retired.
    jia, jia_days = [], []
    for _ in range(2):
        jia.append(await team("甲联防队"))
        jia_days.append(await retire(jia[-1]))
        world.clock.advance(86400)
    yi, yi_days = [], set()
    for _ in range(2):  # at one moment
        yi.append(await team("乙联防队"))
        yi_days.add(await retire(yi[-1]))
    (yi_day,) = yi_days
    yi.sort(key=lambda t: t["id"])
    world.clock.advance(86400)
    serving = await team("甲联防队")
    # Each alerted to an incident, so that the report labels it among its rows by team.
    now = world.clock.now()
    cases = [
        breached_unanswered(t["id"], now - timedelta(days=3, hours=n)) for n, t in enumerate(made)
    ]
    await store(world, cases, operator.id)
    auditor = await world.account("auditor")
    reply = await world.http.get(
        "/api/v1/reports/response-times",
        params={"from": (now - timedelta(days=5)).isoformat(), "group_by": "team"},
        headers=auditor.headers,
    )
    assert reply.status_code == 200, reply.text
    labels = {g["key"]: g["label"] for g in reply.json()["groupings"][0]["groups"]}

    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", auditor)
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    options = page.locator("#team option")
    # In service first, then the retired, by name (甲 jiǎ before 乙 yǐ) and as they retired.
    order = [serving, *jia, *yi]
    await expect(options).to_have_text(
        [
            "全部",
            "甲联防队",
            f"甲联防队（{jia_days[0]}撤销）",
            f"甲联防队（{jia_days[1]}撤销）",
            *(f"乙联防队（{yi_day}撤销，编号{t['id']}）" for t in yi),
        ]
    )
    values = [await o.get_attribute("value") for o in await options.all()]
    assert values == ["", *(t["id"] for t in order)]
    texts = await options.all_text_contents()
    assert texts[1:] == [labels[t["id"]] for t in order]

    await page.get_by_role("button", name="English").click()
    await expect(options).to_have_text(
        [
            "All",
            "甲联防队",
            f"甲联防队 (retired {jia_days[0]})",
            f"甲联防队 (retired {jia_days[1]})",
            *(f"乙联防队 (retired {yi_day}, id {t['id']})" for t in yi),
        ]
    )


async def test_weeks_and_retired_teams_are_said_in_the_pages_language(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The server labels a week 2026-W50（2026-12-07起） and a retired team A驻点队（已撤销）, in
    Chinese, for its exports. The page says them in its own language from their parts: in the
    grouping's table, the per-team chart and its data, and the exclusions."""
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    monday = date.fromisoformat(local_day)
    monday -= timedelta(days=monday.weekday())
    year, week, _ = monday.isocalendar()
    admin = await world.admin()
    retired = day.teams["A"]["id"]
    reply = await world.http.delete(f"/api/v1/teams/{retired}", headers=admin.headers)
    assert reply.status_code == 204

    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await page.get_by_role("button", name="English").click()
    await ask_report(page, local_day, choose={"group-by": "week"}, button="Show")
    weeks = page.locator("#grouping tbody th")
    await expect(weeks.first).to_have_text(f"{year}-W{week:02d} (from {monday})")
    await expect(page.locator("#data-teams")).to_contain_text("A驻点队 (retired)")
    labels = json.loads(await page.locator("#chart-teams").get_attribute("data-labels") or "[]")
    assert "A驻点队 (retired)" in labels, labels
    # Filtered by the retired team: its exclusions (by dispatch) name it so too.
    await page.locator("#team").select_option(retired)
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    team_cells = page.locator("#exclusions tbody td:nth-child(4)")
    await expect(team_cells.first).to_have_text("A驻点队 (retired)")
    await expect(page.locator("#result")).not_to_contain_text("已撤销")
    await expect(page.locator("#result")).not_to_contain_text("起）")

    await page.get_by_role("button", name="中文").click()
    await expect(weeks.first).to_have_text(f"{year}-W{week:02d}（{monday}起）")
    await expect(team_cells.first).to_have_text("A驻点队（已撤销）")
    await expect(page.locator("#data-teams")).to_contain_text("A驻点队（已撤销）")


async def test_the_histogram_follows_the_tier_or_the_teams_tier_with_its_target(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Filtered by tier 2 the histogram is of tier 2's arrivals with its 180 s line, and says so
    in its heading; filtered by the patrol, of the patrol's own arrivals (tier 2); without a
    filter, tier 1's against 60 s, as before."""
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    page = await (await desk_context(browser, contexts)).new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    canvas = page.locator("#chart-histogram")
    heading = page.locator("section:has(#chart-histogram) h2")
    bins = page.locator("#data-histogram tbody tr td:first-child")

    async def show(**choices: str) -> None:
        asked.clear()
        await ask_report(page, local_day, choose=choices)

    await show()
    await expect(heading).to_have_text("一梯队到场用时分布")
    await expect(bins).to_have_text(["40-50", "50-60", "70-80"])

    await show(tier="2")
    await expect(bins).to_have_text(["90-100", "160-170", "190-200"])
    await expect(heading).to_have_text("二梯队到场用时分布")
    (histogram,) = [url for url in asked if "/api/v1/reports/arrival-histogram" in url]
    assert "tier=2" in histogram
    # The line drawn at 180 s (data-targets: the targets drawn).
    await expect(canvas).to_have_attribute("data-tier", "2")
    await expect(canvas).to_have_attribute("data-targets", "[180]")
    await expect(canvas).to_have_attribute(
        "aria-label", "二梯队到场用时分布 · 共 3 次到场 · 到场用时（秒） · 次数"
    )
    await page.get_by_role("button", name="English").click()
    await expect(heading).to_have_text("Tier-2 times to arrival")
    await page.get_by_role("button", name="中文").click()
    await expect(heading).to_have_text("二梯队到场用时分布")

    await show(tier="", team=day.teams["P"]["id"])
    await expect(heading).to_have_text("二梯队到场用时分布")
    await expect(canvas).to_have_attribute("data-targets", "[180]")
    await expect(bins).to_have_text(["90-100", "160-170", "190-200"])

    await show(tier="3", team="")
    await expect(heading).to_have_text("三梯队到场用时分布")
    await expect(canvas).to_have_attribute("data-targets", "[300]")
    await expect(bins).to_have_text(["240-250", "290-300"])

    await show(tier="")
    await expect(heading).to_have_text("一梯队到场用时分布")
    await expect(canvas).to_have_attribute("data-targets", "[60]")


async def test_a_time_past_its_target_never_reads_as_on_it(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Times are shown to 0.1 s, rounded away from the side of the target they are not on:
    60.04 s breached the 60 s target and reads 1 分 00.1 秒, 59.96 s met it and reads 59.9 秒
    (as the console's 59 秒), never on the minute, and exactly 60 s, which met it too, reads
    1 分 00.0 秒."""
    teams = await seed_around_the_target(world)
    auditor = await world.account("auditor")
    api = (
        await world.http.get(
            "/api/v1/reports/response-times",
            params={"group_by": ["team", "tier"]},
            headers=auditor.headers,
        )
    ).json()
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", auditor)
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    # The seeding moved the server's clock on by half an hour, maybe past midnight in Shanghai
    # while the browser's today is still the day before: the period is the server's days.
    today = world.clock.now().astimezone(DISPLAY_TZ).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    await ask_report(page, yesterday, today.isoformat(), choose={"group-by": "team"})
    await expect(page.locator("#grouping")).to_have_attribute("data-by", "team")

    shown = {
        "早到驻点队": "59.9 秒",
        "准时驻点队": "1 分 00.0 秒",
        "迟到驻点队": "1 分 00.1 秒",
    }
    for name, arrival in AROUND_THE_TARGET.items():
        row = page.locator(f'#grouping tr[data-key="{teams[name]["id"]}"][data-tier="1"]')
        cell = row.locator('td[data-field="time_to_arrival.max"]')
        await expect(cell).to_have_text(shown[name])
        # The exact time is kept with the cell.
        assert float(await cell.get_attribute("data-value") or "nan") == arrival
    (by_team,) = [g for g in api["groupings"] if g["by"] == "team"]
    for group in by_team["groups"]:
        await check_row(page.locator(f'#grouping tr[data-key="{group["key"]}"]'), group["tiers"][0])
    # Tier 1's arrivals 59.96, 60 and 60.04 s: P50 is the one exactly on the target.
    await expect(page.locator('.tier-card[data-tier="1"]')).to_contain_text(
        "达标 2 · 超时 1P50 1 分 00.0 秒 · P90 1 分 00.1 秒 · 最大 1 分 00.1 秒"
    )


async def test_a_share_is_never_rounded_onto_all_or_none(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Of 2001 incidents, tier 1 met 2000 (99.95 %) and tier 2 met one (0.05 %): the page says
    99.9% and 0.1%, where plain rounding said 100.0% and 0.0%, as if none had missed or met."""
    now = world.runtime.clock.now()
    cases = []
    for n in range(2001):
        reported = now - timedelta(hours=2, seconds=n)
        case = Case(new_id(), reported, reported + us(900), "fight", None)
        for tier, met in ((1, n > 0), (2, n == 0)):
            target = TARGETS[tier - 1]
            arrived = reported + us(target - 1 if met else target + 1)
            status = "met" if met else "breached"
            case.tiers.append(Tier(tier, target, reported + us(target), status, True, arrived))
        cases.append(case)
    await store(world, cases, (await world.operator()).id)
    auditor = await world.account("auditor")
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", auditor)
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    for tier, text in ((1, "99.9%"), (2, "0.1%")):
        card = page.locator(f'.tier-card[data-tier="{tier}"] .tier-card-share')
        await expect(card).to_have_text(text)


async def test_the_default_period_is_the_servers_last_30_days_whatever_this_computers_clock(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The computer's clock is three days behind: the page still opens on the server's last 30
    days, today included, and the histogram and the downloads are asked for that period."""
    auditor = await world.account("auditor")
    context = await desk_context(browser, contexts)
    await context.clock.set_system_time(world.clock.now() - timedelta(days=3))
    page = await context.new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    await log_in(page, world.base_url + "/console/reports", auditor)
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")

    today = world.clock.now().astimezone(DISPLAY_TZ).date()
    first, end = today - timedelta(days=29), today + timedelta(days=1)
    await expect(page.locator("#to")).to_have_value(today.isoformat())
    await expect(page.locator("#from")).to_have_value(first.isoformat())
    period = f"from={first.isoformat()}&to={end.isoformat()}"
    (histogram,) = [url for url in asked if "/api/v1/reports/arrival-histogram" in url]
    assert period in histogram
    for link in ("#dl-csv", "#dl-exclusions", "#dl-xlsx"):
        assert period in (await page.locator(link).get_attribute("href") or ""), link


async def test_a_reload_shows_the_report_asked_for_not_the_default_again(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The office picks a day, a tier and a grouping and reloads the page (or opens the address
    saved): the same report comes back, not the last 30 days by tier again. The page opened
    bare still opens on the server's default."""
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    app = page.locator("#app")
    await expect(app).to_have_attribute("data-state", "ready")
    assert "?" not in page.url
    await ask_report(page, local_day, choose={"tier": "1", "group-by": "day"})
    period = page.locator("#period")
    asked = await period.inner_text()

    await page.reload()
    await expect(app).to_have_attribute("data-state", "ready")
    await expect(page.locator("#from")).to_have_value(local_day)
    await expect(page.locator("#to")).to_have_value(local_day)
    await expect(page.locator("#tier")).to_have_value("1")
    await expect(page.locator("#group-by")).to_have_value("day")
    await expect(period).to_have_text(asked)
    await expect(page.locator("#grouping-title")).to_have_text("按日")
    await expect(page.locator(".tier-card")).to_have_count(1)


async def test_the_page_opened_bare_says_its_report_is_grouped_by_tier(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Opened bare, the report is by tier and 分组方式 says 按梯队 (it was blank, no grouping
    chosen, beside a report headed 按梯队); 查询 keeps it so, in the address too."""
    await world.team("fixed_post")
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    group_by = page.locator("#group-by")
    await expect(page.locator("#grouping-title")).to_have_text("按梯队")
    await expect(group_by).to_have_value("tier")
    await expect(group_by.locator("option:checked")).to_have_text("按梯队")
    await page.get_by_role("button", name="English").click()
    await expect(group_by.locator("option:checked")).to_have_text("By tier")
    await page.get_by_role("button", name="中文").click()

    await page.get_by_role("button", name="查询").click()
    await expect(page).to_have_url(re.compile(r"[?&]group_by=tier(&|$)"))
    await page.reload()
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await expect(group_by).to_have_value("tier")
    await expect(page.locator("#grouping-title")).to_have_text("按梯队")


# Android's and Apple's guidance for a control a thumb hits: 48 dp, 44 pt (as on the leader's page).
THUMB_PX = 48
SMALL_CONTROLS = """(least) => Array.from(document.querySelectorAll(
        'body > header :is(a, button), #app :is(a, button, summary, input, select)'))
    .filter((el) => el.checkVisibility())
    .map((el) => [el.id || el.textContent.trim(), el.getBoundingClientRect()])
    .filter(([, box]) => box.height < least || box.width < least)
    .map(([name, box]) => name + ' ' + Math.round(box.width) + 'x' + Math.round(box.height))"""


async def test_every_control_of_the_report_page_is_thumb_sized_on_a_phone(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The page fits a phone, and on a touch screen its controls take a thumb: the data tables'
    toggles were 20 px high, the downloads 34 px, the filters 40 px."""
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    page = await (await phone_context(browser, contexts, QINGXI)).new_page()
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await ask_report(page, local_day)
    for language in ("zh", "en"):
        small: list[str] = await page.evaluate(SMALL_CONTROLS, THUMB_PX)
        assert small == [], (language, small)
        if language == "zh":
            await page.get_by_role("button", name="English").click()
            await expect(page.locator("h1")).to_have_text("1-3-5 response-time report")


async def test_a_citys_teams_come_to_the_team_filter_a_page_at_a_time(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The page asked for every team, retired ones too, in one answer: megabytes at a city's
    scale. It reads them a page at a time, and the filter offers every one, the retired after
    those in service, as before."""
    await city_teams(world, CITY_TEAMS)
    admin = await world.admin()
    listed = await world.http.get("/api/v1/teams", headers=admin.headers)
    in_service = [t["id"] for t in listed.json()]
    retired = [in_service.pop(0), in_service.pop(-1)]
    for team_id in retired:
        reply = await world.http.delete(f"/api/v1/teams/{team_id}", headers=admin.headers)
        assert reply.status_code == 204, reply.text
    page = await (await desk_context(browser, contexts)).new_page()
    asked = queries_to(page, "/api/v1/teams")

    # Two more retired while the first page is on its way, its last team one of them: by
    # offset, those after them moved up by two, past a next page started one early. The page
    # shows them as the first page had them, in service; none after them is skipped.
    moved: list[str] = []

    async def retire_meanwhile(route: Route) -> None:
        answer = await route.fetch()
        if not moved:
            moved.extend([in_service.pop(0), in_service[998]])
            for team_id in moved:
                reply = await world.http.delete(f"/api/v1/teams/{team_id}", headers=admin.headers)
                assert reply.status_code == 204, reply.text
        await route.fulfill(response=answer)

    await page.route("**/api/v1/teams?*", retire_meanwhile)
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    # The first TEAMS_LISTED in the list's order, and a count of the rest: every team once.
    options = page.locator("#team option")
    await expect(options).to_have_count(1 + TEAMS_LISTED)
    more = CITY_TEAMS - TEAMS_LISTED
    await expect(page.locator("#team-found")).to_have_text(
        f"列出前 {TEAMS_LISTED} 个联防队，另有 {more} 个请输入名称查找"
    )
    values = [await o.get_attribute("value") for o in await options.all()]
    assert values == ["", moved[0], *in_service[: TEAMS_LISTED - 1]]
    # The retired after those in service: found by name, at the end of the list.
    find = page.get_by_role("searchbox", name="查找联防队")
    await find.fill("驻点队0")
    await expect(page.locator("#team-found")).to_contain_text(f"找到 {CITY_TEAMS} 个联防队")
    await find.fill("驻点队01199")
    await expect(options).to_have_count(2)
    assert await options.last.get_attribute("value") == retired[1]
    # The next page after the first one's last team, retired since: it keeps its place.
    assert [query.get("after") for query in asked] == [None, [moved[1]]]
    for query in asked:
        assert query["include_retired"] == ["true"]
        assert "offset" not in query and "after_retired" not in query
        assert int(query["limit"][0]) <= 2000
    # A team of the second page is one the report filters by.
    await find.fill("驻点队00000")
    await page.locator("#team").select_option(retired[0])
    await page.get_by_role("button", name="查询").click()
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    assert "team_id=" + retired[0] in page.url


async def test_a_team_is_found_among_a_citys_by_typing_part_of_its_name(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """At a city's scale the team filter offered every team in one list, tens of thousands to
    scroll through. Typing part of a name into 查找联防队 (Find team) narrows the list to the
    teams whose label holds it, retired ones by their marked label; the list's value is still
    the team filtered by, and one chosen stays offered while the text names others."""
    await city_teams(world, CITY_TEAMS)
    admin = await world.admin()
    listed = await world.http.get("/api/v1/teams", headers=admin.headers)
    by_name = {t["name"]: t["id"] for t in listed.json()}
    retired = by_name["驻点队00123"]
    reply = await world.http.delete(f"/api/v1/teams/{retired}", headers=admin.headers)
    assert reply.status_code == 204, reply.text
    page = await (await desk_context(browser, contexts)).new_page()
    asked = queries_to(page, "/api/v1/reports/response-times")
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    team = page.locator("#team")
    options = team.locator("option")
    await expect(options).to_have_count(1 + TEAMS_LISTED)

    find = page.get_by_role("searchbox", name="查找联防队")
    await find.fill("0012")
    # 全部, 驻点队00012 and 驻点队00120 to 00129: a part anywhere in the name.
    await expect(options).to_have_count(12)
    await expect(page.locator("#team-found")).to_have_text("找到 11 个联防队")
    await find.fill("00123")
    await expect(options).to_have_text(["全部", "驻点队00123（已撤销）"])
    # From the text to the list by keyboard, and the team chosen there.
    await find.press("Tab")
    await expect(team).to_be_focused()
    await team.select_option(label="驻点队00123（已撤销）")
    await page.get_by_role("button", name="查询").click()
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    assert asked[-1]["team_id"] == [retired]
    assert "team_id=" + retired in page.url
    # Text naming other teams leaves the chosen one chosen and offered, in its place.
    await find.fill("00777")
    await expect(options).to_have_text(["全部", "驻点队00777", "驻点队00123（已撤销）"])
    await expect(team).to_have_value(retired)

    await page.get_by_role("button", name="English").click()
    await expect(page.locator("h1")).to_have_text("1-3-5 response-time report")
    find = page.get_by_role("searchbox", name="Find team")
    await expect(find).to_have_value("00777")
    await expect(options).to_have_text(["All", "驻点队00777", "驻点队00123 (retired)"])
    await find.fill("队01111")
    await expect(options).to_have_text(["All", "驻点队01111", "驻点队00123 (retired)"])
    await expect(page.locator("#team-found")).to_have_text("1 team found")
    await team.select_option(label="驻点队01111")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    assert asked[-1]["team_id"] == [by_name["驻点队01111"]]
    # Emptied, the list offers the first teams again, and the one chosen in its place.
    await find.fill("")
    await expect(options).to_have_count(2 + TEAMS_LISTED)
    await expect(options.last).to_have_text("驻点队01111")
    await expect(team).to_have_value(by_name["驻点队01111"])


async def test_typing_in_a_citys_team_filter_lists_a_few_and_says_the_count_once(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Each keystroke in 查找联防队 laid out every team its text matched: the first character,
    held by every name, thousands of options (a third of a second at 18 000 teams), and the
    count under the field, a live region, was said at every keystroke. The list now holds the
    first TEAMS_LISTED found, the line under the field says how many more to type on for, and
    the count is said once the typing pauses."""
    await city_teams(world, CITY_TEAMS)
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    options = page.locator("#team option")
    found = page.locator("#team-found")
    find = page.get_by_role("searchbox", name="查找联防队")
    await expect(find).to_have_attribute("aria-describedby", "team-found")

    await find.fill("驻")
    await expect(options).to_have_count(1 + TEAMS_LISTED)
    more = CITY_TEAMS - TEAMS_LISTED
    await expect(found).to_have_text(
        f"找到 {CITY_TEAMS} 个联防队，列出前 {TEAMS_LISTED} 个，另有 {more} 个请继续输入"
    )
    await expect(page.locator("#team-said")).to_have_text(re.compile(f"找到 {CITY_TEAMS} 个"))

    # Typed a character at a time: the line follows each, the count is said once.
    await find.fill("")
    await listen(page)
    await find.press_sequentially("驻点队0012")
    await expect(options).to_have_text(["全部", *(f"驻点队{n:05d}" for n in range(120, 130))])
    await expect(found).to_have_text("找到 10 个联防队")
    await expect(page.locator("#team-said p").last).to_have_text("找到 10 个联防队")
    said = await heard(page)
    assert [(s["region"], s["text"]) for s in said] == [("team-said", "找到 10 个联防队")], said
    # By keyboard from the text to the list, a team chosen there.
    await find.press("Tab")
    await expect(page.locator("#team")).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(page.locator("#team")).not_to_have_value("")

    await page.get_by_role("button", name="English").click()
    find = page.get_by_role("searchbox", name="Find team")
    await find.fill("驻")
    await expect(found).to_have_text(
        f"{CITY_TEAMS} teams found, the first {TEAMS_LISTED} listed; {more} more, keep typing"
    )
    await find.fill("")
    await expect(found).to_have_text(
        f"The first {TEAMS_LISTED} teams listed; {more} more, type a name to find them"
    )


async def test_back_forward_and_a_shared_link_reopen_a_report_with_its_team_and_search(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Each report asked for replaced the last in the page's address, the text typed in
    查找联防队 left out: the browser's back left the page, and a link shared opened the team
    filter on the first teams. Each is now a step of the history with its filters, the
    search text among them: back and forward show the report before and after, and the link
    opens the same report, the team listed for its search and chosen."""
    await city_teams(world, CITY_TEAMS)
    admin = await world.admin()
    listed = await world.http.get("/api/v1/teams?limit=2000", headers=admin.headers)
    by_name = {t["name"]: t["id"] for t in listed.json()}
    today = world.clock.now().astimezone(DISPLAY_TZ).date()
    first, second = (today - timedelta(days=2)).isoformat(), (today - timedelta(days=1)).isoformat()
    auditor = await world.account("auditor")
    page = await (await desk_context(browser, contexts)).new_page()
    asked = queries_to(page, "/api/v1/reports/response-times")
    await log_in(page, world.base_url + "/console/reports", auditor)
    app = page.locator("#app")
    await expect(app).to_have_attribute("data-state", "ready")
    find = page.get_by_role("searchbox", name="查找联防队")
    team = page.locator("#team")
    period = page.locator("#period")

    await find.fill("0012")
    await team.select_option(label="驻点队00123")
    await ask_report(page, first, choose={"group-by": "day"})
    shared = page.url
    assert "team_search=0012" in shared and "team_id=" + by_name["驻点队00123"] in shared
    await find.fill("00777")
    await team.select_option(label="驻点队00777")
    await ask_report(page, second, choose={"tier": "1"})
    assert "team_search=00777" in page.url

    await page.go_back()
    await expect(page.locator("#from")).to_have_value(first)
    await expect(find).to_have_value("0012")
    await expect(team).to_have_value(by_name["驻点队00123"])
    await expect(page.locator("#tier")).to_have_value("")
    await expect(page.locator("#group-by")).to_have_value("day")
    await expect(app).to_have_attribute("data-state", "ready")
    await expect(period).to_contain_text(first)
    assert asked[-1]["team_id"] == [by_name["驻点队00123"]] and "tier" not in asked[-1]
    assert page.url == shared

    await page.go_forward()
    await expect(page.locator("#from")).to_have_value(second)
    await expect(find).to_have_value("00777")
    await expect(team).to_have_value(by_name["驻点队00777"])
    await expect(page.locator("#tier")).to_have_value("1")
    await expect(app).to_have_attribute("data-state", "ready")
    await expect(period).to_contain_text(second)
    assert asked[-1]["team_id"] == [by_name["驻点队00777"]] and asked[-1]["tier"] == ["1"]

    # Back to the page as it opened: the server's period again, every filter at "all".
    await page.go_back()
    await page.go_back()
    await expect(find).to_have_value("")
    await expect(team).to_have_value("")
    await expect(app).to_have_attribute("data-state", "ready")
    assert "team_id" not in asked[-1] and "from" not in asked[-1]

    # The link shared, opened by someone else.
    other = await (await desk_context(browser, contexts)).new_page()
    theirs = queries_to(other, "/api/v1/reports/response-times")
    await log_in(other, shared, auditor)
    await expect(other.locator("#app")).to_have_attribute("data-state", "ready")
    await expect(other.get_by_role("searchbox", name="查找联防队")).to_have_value("0012")
    await expect(other.locator("#team")).to_have_value(by_name["驻点队00123"])
    await expect(other.locator("#team option")).to_have_count(12)
    await expect(other.locator("#period")).to_contain_text(first)
    assert theirs[-1]["team_id"] == [by_name["驻点队00123"]]
