"""The operator's console on a city: what it fetches, draws and costs with thousands of teams.

Seeds a town of about ``--teams`` teams (fixed posts 100 m, mobile teams 500 m, patrol and
response police) with a few open incidents into a scratch PostgreSQL database, serves it, and
opens /console in headless Chromium (Debian's, through Playwright) signed in as an operator.
Prints, per town: the bytes of each API call the console makes as it opens; the time until the
first incident's card shows and until the zones are drawn; the JS heap and DOM nodes (Chrome's
``Performance.getMetrics``); the SVG paths and canvases on the map; the longest frames while
the map is dragged and zoomed out and back; and, with the map busy, how long a new incident's
card takes to show after its report is answered, and the longest frame meanwhile.

    .venv/bin/python -m bench.console_map --teams 2000,20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright

from bench.common import (
    Served,
    say,
    scratch_postgres,
    serve_dispatch,
    sqlalchemy_url,
    town_env,
    work_dir,
)
from dispatch.simulate import town as towns
from dispatch.simulate.seed import Seeded, seed_database

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
OPEN_INCIDENTS = 5

# Frame intervals from requestAnimationFrame, kept by the page until read.
FRAMES = """
window.__frames = [];
window.__frameLoop = (last => function loop(now) {
  if (last !== null) window.__frames.push(now - last);
  last = now;
  requestAnimationFrame(loop);
})(null);
requestAnimationFrame(window.__frameLoop);
"""


def city(teams: int) -> towns.Town:
    """A generated town of about ``teams`` teams, by the plan's proportions of fixed posts to
    mobile teams per police station, on a side that grows with it (a city's districts)."""
    per_station = 1 + towns.FIXED_POSTS_PER_STATION + towns.MOBILE_TEAMS_PER_STATION
    stations = max(1, min(towns.MAX_STATIONS, round(teams / per_station)))
    # Room left for the response police, a few dozen bases on a city's side.
    fixed = max(1, (teams - 100) // stations - 1 - towns.MOBILE_TEAMS_PER_STATION)
    side = min(towns.MAX_SIDE_M, 12_000.0 * math.sqrt(stations / 3))
    return towns.generate(stations=stations, fixed_per_station=fixed, side_m=side)


@contextlib.asynccontextmanager
async def served_city(
    teams: int, work: Path, name: str
) -> AsyncIterator[tuple[towns.Town, Served, Seeded]]:
    """A ``city`` of ``teams`` teams, seeded into a scratch PostgreSQL database and served by a
    dispatch process logging as ``name``; the process stopped when the block ends."""
    town = city(teams)
    async with scratch_postgres(f"bench_{name}") as dsn:
        url = sqlalchemy_url(dsn)
        secret = secrets.token_urlsafe(32)
        seeded = await seed_database(url, town, secret=secret)
        served = serve_dispatch(town_env(url, secret, work), work, name)
        try:
            yield town, served, seeded
        finally:
            served.stop()


async def _metrics(page: Page) -> dict[str, float]:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    reply = await cdp.send("Performance.getMetrics")
    await cdp.detach()
    return {m["name"]: m["value"] for m in reply["metrics"]}


async def _longest_frames(page: Page) -> tuple[float, float]:
    frames: list[float] = await page.evaluate("window.__frames.splice(0)")
    if not frames:
        return float("nan"), float("nan")
    frames.sort()
    return frames[-1], frames[int(0.95 * (len(frames) - 1))]


async def measure(base: str, token: str, town: towns.Town) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(
            viewport={"width": 1440, "height": 900}, bypass_csp=True
        )
        stored = json.dumps({"token": token, "expires_at": None})
        await context.add_init_script(
            f"localStorage.setItem('dispatch.console.token', {json.dumps(stored)});" + FRAMES
        )
        page = await context.new_page()
        fetched: list[tuple[str, int]] = []

        async def finished(request: Any) -> None:
            if "/api/" in request.url:
                sizes = await request.sizes()
                path = request.url.split("://", 1)[1].split("/", 1)[1]
                fetched.append(("/" + path, sizes["responseBodySize"]))

        page.on("requestfinished", lambda r: asyncio.ensure_future(finished(r)))
        start = time.perf_counter()
        await page.goto(base + "/console")
        await page.wait_for_selector("article.incident", timeout=300_000)
        figures["card_s"] = time.perf_counter() - start
        drawn = "document.querySelector('.leaflet-overlay-pane path, .leaflet-overlay-pane canvas')"
        await page.wait_for_function(drawn, polling="raf", timeout=300_000)
        figures["map_s"] = time.perf_counter() - start
        await page.wait_for_load_state("networkidle")
        await asyncio.sleep(1.0)
        figures["fetched"] = sorted(fetched, key=lambda f: -f[1])
        metrics = await _metrics(page)
        figures["heap_mb"] = metrics["JSHeapUsedSize"] / 1e6
        figures["nodes"] = metrics["Nodes"]
        figures["paths"] = await page.locator(".leaflet-overlay-pane path").count()
        figures["canvases"] = await page.locator(".leaflet-overlay-pane canvas").count()

        box = await page.locator("#map").bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        await page.evaluate("window.__frames.splice(0)")
        await page.mouse.move(x, y)
        await page.mouse.down()
        for step in range(20):
            await page.mouse.move(x + 15 * step, y + 8 * step)
        await page.mouse.up()
        await asyncio.sleep(0.5)
        figures["drag_frame_ms"] = await _longest_frames(page)
        for _ in range(3):
            await page.mouse.wheel(0, 300)
            await asyncio.sleep(0.4)
        for _ in range(3):
            await page.mouse.wheel(0, -300)
            await asyncio.sleep(0.4)
        await asyncio.sleep(0.5)
        figures["zoom_frame_ms"] = await _longest_frames(page)

        lon, lat = town.incident_point(random.Random(7))
        before = await page.locator("article.incident").count()
        async with httpx.AsyncClient(base_url=base) as http:
            reply = await http.post(
                "/api/v1/incidents",
                json={"location": {"lon": lon, "lat": lat}, "category": "fire"},
                headers={"authorization": f"Bearer {token}"},
            )
            reply.raise_for_status()
        answered = time.perf_counter()
        await page.wait_for_function(
            f"document.querySelectorAll('article.incident').length > {before}", polling="raf"
        )
        figures["new_card_ms"] = (time.perf_counter() - answered) * 1000
        await asyncio.sleep(0.5)
        figures["incident_frame_ms"] = await _longest_frames(page)
        await browser.close()
    return figures


async def one(teams: int, work: Path) -> None:
    async with served_city(teams, work, "console") as (town, served, seeded):
        async with httpx.AsyncClient(base_url=served.base_url) as http:
            rng = random.Random(3)
            for _ in range(OPEN_INCIDENTS):
                lon, lat = town.incident_point(rng)
                body = {"location": {"lon": lon, "lat": lat}, "category": "theft"}
                headers = {"authorization": f"Bearer {seeded.operator_token}"}
                (
                    await http.post("/api/v1/incidents", json=body, headers=headers)
                ).raise_for_status()
        figures = await measure(served.base_url, seeded.operator_token, town)
    _show(len(town.teams), figures)


def _show(teams: int, f: dict[str, Any]) -> None:
    say(f"{teams} teams:")
    for path, size in f["fetched"][:4]:
        say(f"    GET {path[:60]:<60} {size / 1e3:>9.1f} kB")
    total = sum(size for _, size in f["fetched"])
    say(f"    API bytes at load {total / 1e6:.2f} MB in {len(f['fetched'])} calls")
    say(f"    first incident card {f['card_s']:.2f} s, zones drawn {f['map_s']:.2f} s")
    say(f"    JS heap {f['heap_mb']:.1f} MB, DOM nodes {f['nodes']:.0f}, ")
    say(f"    map: {f['paths']} SVG paths, {f['canvases']} canvases")
    say(
        "    longest / p95 frame: drag {:.0f} / {:.0f} ms, zoom {:.0f} / {:.0f} ms".format(
            *f["drag_frame_ms"], *f["zoom_frame_ms"]
        )
    )
    say(
        f"    new incident's card {f['new_card_ms']:.0f} ms after its report, "
        "longest frame {:.0f} ms".format(f["incident_frame_ms"][0])
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.console_map", description=__doc__)
    p.add_argument("--teams", default="2000,20000", help="comma-separated town sizes")
    p.add_argument("--work", type=Path, default=Path("/tmp/dispatch-bench"))
    args = p.parse_args()
    with work_dir(args.work, "console") as work:
        for teams in (int(n) for n in args.teams.split(",") if n.strip()):
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(one(teams, work))


if __name__ == "__main__":
    main()
