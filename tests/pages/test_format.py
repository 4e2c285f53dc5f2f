"""How the pages write times (web/src/shared/format.js) and say errors (errors.js), asked of
the modules themselves in headless Chromium.

The module is served as it is in the source tree, from an address no server holds (Playwright
answers for it), and imported by a page that hands its functions to the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route

from dispatch.schemas import DISPLAY_TZ
from tests.pages.conftest import Opened, desk_context

SOURCE = Path(__file__).resolve().parents[2] / "web" / "src"
ORIGIN = "http://format.test"
HARNESS = """<!doctype html><meta charset="utf-8"><script type="module">
import * as format from './shared/format.js';
import { setLang, t } from './shared/i18n.js';
import { ApiError } from './shared/api.js';
import { errorText } from './shared/errors.js';
window.format = format;
window.refusal = (status, body) => errorText(new ApiError(status, body.detail, null, body));
window.setLang = setLang;
window.t = t;
window.ready = true;
</script>"""


async def serve_source(route: Route) -> None:
    path = route.request.url.removeprefix(ORIGIN + "/")
    if path == "harness.html":
        await route.fulfill(body=HARNESS, content_type="text/html")
        return
    file = (SOURCE / path).resolve()
    assert file.is_relative_to(SOURCE) and file.suffix == ".js", path
    await route.fulfill(body=file.read_text(encoding="utf-8"), content_type="text/javascript")


@pytest.fixture
async def page(browser: Browser, contexts: Opened) -> AsyncIterator[Page]:
    context = await desk_context(browser, contexts)
    await context.route(ORIGIN + "/**", serve_source)
    opened = await context.new_page()
    await opened.goto(ORIGIN + "/harness.html")
    await opened.wait_for_function("window.ready === true")
    yield opened


async def shown(page: Page, lang: str, function: str, values: list[Any]) -> list[str]:
    texts: list[str] = await page.evaluate(
        "([lang, name, values]) => { setLang(lang); return values.map((v) => format[name](v)); }",
        [lang, function, values],
    )
    return texts


async def test_the_console_shows_a_minute_or_more_as_minutes_and_seconds(page: Page) -> None:
    """The console's rule: tenths below 10 s, whole seconds from there, a time since an event
    rounded up (60.4 s after the report was late for 60 s and reads 1 分 01 秒, not on the
    minute); from one minute as shown, minutes and two-digit seconds."""
    values = [0.04, 0.3, 9.3, 9.96, 40, 59, 59.4, 60, 60.4, 187.3, 600.2, 3725]
    assert await shown(page, "zh", "seconds", values) == [
        "0.1 秒",
        "0.3 秒",
        "9.3 秒",
        "10.0 秒",
        "40 秒",
        "59 秒",
        "1 分 00 秒",
        "1 分 00 秒",
        "1 分 01 秒",
        "3 分 08 秒",
        "10 分 01 秒",
        "1 小时 02 分 05 秒",
    ]
    assert await shown(page, "en", "seconds", [59, 187.3]) == ["59 s", "3 min 08 s"]
    # Latencies carry their sign, on the minutes; rounded up, a latency just under nothing is
    # nothing, with no sign.
    signed = [40, 65.2, -65.2, -0.03]
    assert await shown(page, "zh", "signedSeconds", signed) == [
        "+40 秒",
        "+1 分 06 秒",
        "-1 分 05 秒",
        "0.0 秒",
    ]
    assert await shown(page, "en", "signedSeconds", signed) == [
        "+40 s",
        "+1 min 06 s",
        "-1 min 05 s",
        "0.0 s",
    ]


async def test_a_tiers_time_never_reads_on_the_wrong_side_of_its_target(page: Page) -> None:
    """A tier's time taken is rounded away from the side of the target it is not on: met at
    59.6 s it reads 59 秒 (the report page's 59.6 秒), never 1 分 00 秒 as if on the minute;
    late at 60.4 s it reads 1 分 01 秒, never 1 分 00 秒; exactly on the target, 1 分 00 秒."""
    met = await page.evaluate(
        "(values) => values.map((v) => format.secondsTaken(v, true))", [9.96, 59.6, 59.999, 60]
    )
    assert met == ["9.9 秒", "59 秒", "59 秒", "1 分 00 秒"]
    late = await page.evaluate(
        "(values) => values.map((v) => format.secondsTaken(v, false))", [60.0001, 60.4, 187.3]
    )
    assert late == ["1 分 01 秒", "1 分 01 秒", "3 分 08 秒"]
    # An arrival's latency in time reads as its tier's time; others are rounded up.
    assert await page.evaluate(
        "[format.signedSeconds(59.6, true), format.signedSeconds(59.6)]"
    ) == [
        "+59 秒",
        "+1 分 00 秒",
    ]
    # The report page, to 0.1 s, by the same rule.
    against = await page.evaluate(
        "(values) => values.map((v) => format.secondsAgainst(v, 60))", [59.6, 59.96, 60, 60.04]
    )
    assert against == ["59.6", "59.9", "60.0", "60.1"]


async def test_a_countdown_never_reads_zero_while_there_is_time_or_once_it_is_late(
    page: Page,
) -> None:
    """1:00 as the incident is reported, 0:01 in its last second, +0:01 as soon as the deadline
    is past: 0:00 only at the deadline itself, where the clock read 0:59 at the report and 0:00
    for the second either side of the deadline."""
    left = [60, 59.999, 59.4, 1, 0.4, 0.001, 0, -0.001, -0.4, -1, -59.5, -61]
    assert await shown(page, "zh", "countdown", left) == [
        "1:00",
        "1:00",
        "1:00",
        "0:01",
        "0:01",
        "0:01",
        "0:00",
        "+0:01",
        "+0:01",
        "+0:01",
        "+1:00",
        "+1:01",
    ]


async def test_a_clock_offset_reads_to_the_nearest_step(page: Page) -> None:
    """A device clock's offset from the server's has no later side: 30 ms either way agrees
    (0.0, no sign), 2.46 s reads 2.5 and 65.4 s reads 1 分 05 秒."""
    offsets = [0.03, -0.03, 2.46, -2.44, 65.4, -65.6]
    assert await shown(page, "zh", "offsetSeconds", offsets) == [
        "0.0 秒",
        "0.0 秒",
        "+2.5 秒",
        "-2.4 秒",
        "+1 分 05 秒",
        "-1 分 06 秒",
    ]


async def test_the_reports_round_up_to_a_tenth_before_splitting_off_the_minutes(
    page: Page,
) -> None:
    """Rounded up to 0.1 s first, so a time past a minute's target never reads as on it
    (60.04 s is 1 分 00.1 秒), and the split never makes a 60th second (179.96 s is 3 分
    00.0 秒, not 2 分 60.0 秒)."""
    values = [0.3, 45, 59.94, 59.96, 60, 60.04, 75, 179.96, 187.25, 187.3]
    rounded = await shown(page, "zh", "secondsUp", values)
    assert rounded == [
        "0.3",
        "45.0",
        "60.0",
        "60.0",
        "60.0",
        "60.1",
        "75.0",
        "180.0",
        "187.3",
        "187.3",
    ]
    assert await shown(page, "zh", "duration", rounded) == [
        "0.3 秒",
        "45.0 秒",
        "1 分 00.0 秒",
        "1 分 00.0 秒",
        "1 分 00.0 秒",
        "1 分 00.1 秒",
        "1 分 15.0 秒",
        "3 分 00.0 秒",
        "3 分 07.3 秒",
        "3 分 07.3 秒",
    ]
    assert await shown(page, "en", "duration", ["45.0", "187.3", "3600.0"]) == [
        "45.0 s",
        "3 min 07.3 s",
        "1 h 00 min 00.0 s",
    ]
    # Below a minute a table shows the bare number: there is no minutes form of it.
    assert await shown(page, "zh", "minutesAndSeconds", ["59.9", "60.0", "—"]) == [
        None,
        "1 分 00.0 秒",
        None,
    ]
    assert await shown(page, "zh", "secondsUp", [None]) == ["—"]


async def test_an_hour_or_more_reads_hours_never_minutes_past_sixty(page: Page) -> None:
    """From an hour on a time reads hours, two-digit minutes and seconds (1 小时 16 分 00 秒 /
    1 h 16 min 00 s), as the clocks read 1:16:00, never 76 分 00 秒; its rounding and its
    decimals kept, never a 60th minute (3599.96 s rounded up is 1 小时 00 分 00.0 秒); under an
    hour as before (59 分 59 秒)."""
    values = [3599, 3599.4, 3600, 4560, 4560.4, 36125]
    assert await shown(page, "zh", "seconds", values) == [
        "59 分 59 秒",
        "1 小时 00 分 00 秒",
        "1 小时 00 分 00 秒",
        "1 小时 16 分 00 秒",
        "1 小时 16 分 01 秒",
        "10 小时 02 分 05 秒",
    ]
    assert await shown(page, "en", "seconds", values) == [
        "59 min 59 s",
        "1 h 00 min 00 s",
        "1 h 00 min 00 s",
        "1 h 16 min 00 s",
        "1 h 16 min 01 s",
        "10 h 02 min 05 s",
    ]
    # Signed, the sign on the hours; a tier's time met stays under its hour.
    assert await shown(page, "zh", "signedSeconds", [4560, -4560.4]) == [
        "+1 小时 16 分 00 秒",
        "-1 小时 16 分 00 秒",
    ]
    assert await shown(page, "en", "offsetSeconds", [-3725.4]) == ["-1 h 02 min 05 s"]
    assert await page.evaluate(
        "setLang('zh'), [format.secondsTaken(3599.6, true), format.secondsTaken(3600.4, false)]"
    ) == ["59 分 59 秒", "1 小时 00 分 01 秒"]
    # The record's and the report page's tenths.
    rounded = await shown(page, "zh", "secondsUp", [3599.94, 3599.96, 4560.04])
    assert rounded == ["3600.0", "3600.0", "4560.1"]
    assert await shown(page, "zh", "duration", ["3599.9", *rounded]) == [
        "59 分 59.9 秒",
        "1 小时 00 分 00.0 秒",
        "1 小时 00 分 00.0 秒",
        "1 小时 16 分 00.1 秒",
    ]
    assert await shown(page, "en", "duration", ["3599.9", "4560.1"]) == [
        "59 min 59.9 s",
        "1 h 16 min 00.1 s",
    ]


async def test_a_refused_position_is_named_in_the_leaders_language(page: Page) -> None:
    """A fix's accuracy or the phone's clock refused by the server is named in words, not as
    the API's field."""
    refusals = [
        {
            "error": "invalid_input",
            "detail": "accuracy_m: Input should be less than or equal to 100000",
            "fields": [
                {"field": "accuracy_m", "message": "Input should be less than or equal to 100000"}
            ],
        },
        {
            "error": "invalid_input",
            "detail": "device_time: Input should be a valid datetime",
            "fields": [{"field": "device_time", "message": "Input should be a valid datetime"}],
        },
    ]
    said = {}
    for lang in ("zh", "en"):
        said[lang] = await page.evaluate(
            "([lang, bodies]) => { setLang(lang); return bodies.map((b) => refusal(422, b)); }",
            [lang, refusals],
        )
    assert said["zh"][0] == "定位精度超出范围：不能大于 100000"
    assert said["en"][0] == "Position accuracy out of range: at most 100000"
    assert said["zh"][1].startswith("手机时间") and said["en"][1].startswith("Phone's clock")


async def test_a_count_of_one_reads_in_the_singular_in_english(page: Page) -> None:
    """A day of one incident, and a field that must hold at least one character, are not
    written "1 incidents" or "1 characters"."""
    texts = await page.evaluate(
        """() => { setLang('en'); return [
          t('history.count', { n: 1 }), t('history.end', { n: 1 }),
          t('error.field.too_short', { field: 'Name', n: 1 }),
          t('error.field.too_long', { field: 'Name', n: 1 }),
          t('history.count', { n: 2 }), t('history.end', { n: 2 }),
        ]; }"""
    )
    assert texts == [
        "1 incident",
        "End of the list: the day's only incident is listed",
        "Name is too short: at least 1 character",
        "Name is too long: at most 1 character",
        "2 incidents",
        "End of the list: all 2 incidents of the day are listed",
    ]


async def test_a_held_notification_says_until_when_from_its_time_never_from_its_english(
    page: Page,
) -> None:
    """A notification's hold is said from ``held_until`` in Beijing time, the zone the server
    writes it in or not; held with no time, or one that does not read, it says it waited and
    no time; the English of ``held`` is never read for one; not held, nothing."""
    day = datetime.now(DISPLAY_TZ).date()
    until = datetime.combine(day, dt_time(18, 0, 10), DISPLAY_TZ)
    held = (
        "held until 2026-12-07T18:00:10+08:00: the leader's phone was connected to a server "
        "process that went away at 2026-12-07T17:59:40+08:00, and was given 10 s to reconnect "
        "once the server was back"
    )
    cases = [
        [held, until.isoformat()],
        [held, until.astimezone(UTC).isoformat()],
        [held, None],
        [held, "not a time"],
        [None, None],
        [None, "not a time"],
        ["", None],
    ]
    said = {}
    for lang in ("zh", "en"):
        said[lang] = await page.evaluate(
            "([lang, cases]) => { setLang(lang);"
            " return cases.map(([held, until]) => format.heldText(held, until)); }",
            [lang, cases],
        )
    assert said["zh"] == [
        "先等待队长手机重连至 18:00:10",
        "先等待队长手机重连至 18:00:10",
        "先等待队长手机重连",
        "先等待队长手机重连",
        "",
        "",
        "",
    ]
    assert said["en"][:3] == [
        "after waiting until 18:00:10 for the leader's phone to reconnect",
        "after waiting until 18:00:10 for the leader's phone to reconnect",
        "after waiting for the leader's phone to reconnect",
    ]
