"""The report page's team filter on a city: how long each keystroke in 查找联防队 (Find team)
keeps the page busy.

Seeds a town of about ``--teams`` teams into a scratch PostgreSQL database, serves it, opens
/console/reports in headless Chromium (Debian's, through Playwright) signed in as an operator,
and types ``--text`` into the search a character at a time, then deletes it a character at a
time. Per keystroke it prints the time the page's input handler took, the time until the frame
after it was painted (layout and paint of the list included), and the options in the list;
each keystroke ``--reps`` times, the median.

    .venv/bin/python -m bench.team_find --teams 18000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from bench.common import say, work_dir
from bench.console_map import ARGS, CHROMIUM, served_city

# One keystroke: the search's text set as typing sets it, its input event, then the frame after.
KEYSTROKE = """async (text) => {
  const find = document.querySelector('#team-find');
  const start = performance.now();
  find.value = text;
  find.dispatchEvent(new InputEvent('input', {bubbles: true, inputType: 'insertText'}));
  const handled = performance.now() - start;
  await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
  return [handled, performance.now() - start, document.querySelectorAll('#team option').length];
}"""


async def measure(base: str, token: str, text: str, reps: int) -> list[dict[str, Any]]:
    steps = [text[:n] for n in range(1, len(text) + 1)]
    steps += [text[:n] for n in range(len(text) - 1, -1, -1)]
    times: dict[int, list[tuple[float, float, int]]] = {n: [] for n in range(len(steps))}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        stored = json.dumps({"token": token, "expires_at": None})
        await context.add_init_script(
            f"localStorage.setItem('dispatch.console.token', {json.dumps(stored)});"
        )
        page: Page = await context.new_page()
        await page.goto(base + "/console/reports")
        await page.wait_for_selector("#app[data-state=ready]", timeout=300_000)
        await page.wait_for_load_state("networkidle")
        await asyncio.sleep(1.0)
        for _ in range(reps):
            for n, typed in enumerate(steps):
                times[n].append(tuple(await page.evaluate(KEYSTROKE, typed)))
                # A typist's pace: what the page defers to a pause is not counted in the next.
                await asyncio.sleep(0.6)
        await browser.close()
    return [
        {
            "text": typed,
            "handler_ms": statistics.median(t[0] for t in times[n]),
            "frame_ms": statistics.median(t[1] for t in times[n]),
            "options": times[n][0][2],
        }
        for n, typed in enumerate(steps)
    ]


async def one(teams: int, text: str, reps: int, work: Path) -> None:
    async with served_city(teams, work, "team_find") as (town, served, seeded):
        rows = await measure(served.base_url, seeded.operator_token, text, reps)
    say(f"{len(town.teams)} teams, median of {reps}:")
    say(f"    {'search text':<16} {'handler ms':>10} {'to frame ms':>12} {'options':>8}")
    for row in rows:
        say(
            f"    {row['text'] or '(empty)':<16} {row['handler_ms']:>10.1f}"
            f" {row['frame_ms']:>12.1f} {row['options']:>8}"
        )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.team_find", description=__doc__)
    p.add_argument("--teams", type=int, default=18_000, help="the town's size")
    p.add_argument("--text", default="第12片区驻点3", help="what is typed")
    p.add_argument("--reps", type=int, default=3, help="repetitions of each keystroke")
    p.add_argument("--work", type=Path, default=Path("/tmp/dispatch-bench"))
    args = p.parse_args()
    with work_dir(args.work, "team_find") as work:
        asyncio.run(one(args.teams, args.text, args.reps, work))


if __name__ == "__main__":
    main()
