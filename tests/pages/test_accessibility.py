"""The pages as people who cannot see them well, or work them by keyboard alone, meet them:
axe-core (the standard engine, a devDependency of web/, never in the built pages) finds no
serious or critical problem on the login, the console, the phone and the reports page in the
states that matter, in Chinese and in English; and the operator's and the leader's main
actions are reached and named without a mouse."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.pages.conftest import Opened, desk_context, log_in, phone_context
from tests.pages.test_console_and_phone import card, open_console, open_phone
from tests.pages.test_reports_office import open_report
from tests.reports.test_response_times import seed
from tests.support import QINGXI, World

AXE = Path(__file__).parents[2] / "web" / "node_modules" / "axe-core" / "axe.min.js"
# What keeps a person from using the page, or makes it very hard; axe's minor and moderate
# findings are advice.
BLOCKING = ("serious", "critical")
LANGS = {"zh": ("zh-CN", "English"), "en": ("en", "中文")}


async def violations(page: Page) -> list[str]:
    """What axe finds serious or critical on the page as it is now, one line each."""
    assert AXE.exists(), f"{AXE} is missing: npm --prefix web ci (scripts/setup does it)"
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated rather than added as a <script>: the pages' policy (script-src 'self')
        # refuses inline scripts, rightly, and a context bypassing it would hide the page's
        # own breaches of it, which the contexts fixture fails on.
        await page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = await page.evaluate(
        "async () => (await axe.run(document, {"
        "  resultTypes: ['violations'],"
        # WCAG 2.2's target size, off in axe by default: a leader taps with one thumb.
        "  rules: {'target-size': {enabled: true}},"
        "})).violations"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in found
        if v["impact"] in BLOCKING
    ]


async def switch_to(page: Page, lang: str) -> None:
    """Press the language switch and wait until the page says it is in ``lang``."""
    other = "zh" if lang == "en" else "en"
    await page.get_by_role("button", name=LANGS[other][1]).last.click()
    await expect(page.locator("html")).to_have_attribute("lang", LANGS[lang][0])


async def assert_in_both_languages(
    page: Page, state: str, problems: Callable[[Page], Awaitable[list[str]]]
) -> None:
    """The page in Chinese (as it opens) and in English, then back in Chinese, has none of
    the ``problems`` found."""
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    found = await problems(page)
    assert found == [], f"{state}, in Chinese:\n" + "\n".join(found)
    await switch_to(page, "en")
    found = await problems(page)
    assert found == [], f"{state}, in English:\n" + "\n".join(found)
    await switch_to(page, "zh")


async def assert_accessible_in_both_languages(page: Page, state: str) -> None:
    await assert_in_both_languages(page, state, violations)


async def test_the_login_with_its_error_shown_has_no_serious_problem_on_any_page(
    world: World, browser: Browser, contexts: Opened
) -> None:
    operator = await world.operator()
    for path, context in (
        ("/console", await desk_context(browser, contexts)),
        ("/console/reports", await desk_context(browser, contexts)),
        ("/m", await phone_context(browser, contexts, QINGXI)),
    ):
        page = await context.new_page()
        await page.goto(world.base_url + path)
        await page.get_by_label("用户名").fill(operator.name)
        await page.get_by_label("密码").fill("not-the-password")
        await page.get_by_role("button", name="登录").click()
        await expect(page.locator("#login-error")).to_have_text("登录失败：用户名或密码错误")
        # The form is the page's main landmark, where a screen reader's "main" key goes.
        await expect(page.get_by_role("main").get_by_label("用户名")).to_be_visible()
        await assert_accessible_in_both_languages(page, f"{path}: the login with its error")


async def test_the_console_with_a_live_incident_the_map_and_a_record_has_no_serious_problem(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    await world.team("mobile", *QINGXI)
    operator = await world.operator()
    incident = await world.report(operator, category="fight")
    console = await open_console(browser, contexts, world)
    live = card(console, incident["id"])
    await expect(live.locator('.tier[data-tier="1"] .tier-clock')).to_be_visible()
    await expect(console.locator("#map .leaflet-marker-icon, #map path").first).to_be_visible()
    await assert_accessible_in_both_languages(console, "the console with a live incident")

    # The clocks run out: the breach alarm and the cards' breached tiers.
    world.clock.advance(61)
    await expect(console.locator("#alarm")).to_be_visible()
    await assert_accessible_in_both_languages(console, "the console with the breach alarm")

    await console.get_by_role("button", name="历史警情").click()
    await expect(console.locator("#history")).to_have_attribute("data-state", "ready")
    await (
        console.locator(f'#history tr[data-incident-id="{incident["id"]}"]')
        .get_by_role("button")
        .click()
    )
    await expect(console.locator("#history-record")).to_have_attribute("data-state", "ready")
    # The history stands in for the console's main part, and is the main landmark in its turn.
    await expect(console.get_by_role("main").locator("#history-record")).to_be_visible()
    await assert_accessible_in_both_languages(console, "the console with an incident's record")


async def alerted_phone(
    world: World,
    browser: Browser,
    contexts: Opened,
    tiles: Callable[[BrowserContext], Awaitable[None]] | None = None,
) -> Page:
    """A fixed post's leader's phone, open at the scene, as a fire there is reported; its map's
    tiles served by ``tiles`` where given."""
    leader = await world.leader(await world.team("fixed_post"))
    context = await phone_context(browser, contexts, QINGXI)
    if tiles is not None:
        await tiles(context)
    phone = await context.new_page()
    await log_in(phone, world.base_url + "/m", leader)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    await world.report(await world.operator(), category="fire")
    return phone


async def test_the_phone_with_its_alert_and_its_list_has_no_serious_problem(
    world: World, browser: Browser, contexts: Opened
) -> None:
    phone = await alerted_phone(world, browser, contexts)
    await expect(phone.locator("#alert")).to_be_visible()
    await assert_accessible_in_both_languages(phone, "the phone's full-screen alert")

    await phone.get_by_role("button", name="接警").click()
    await expect(phone.locator("#accept")).to_contain_text("已接警")
    await assert_accessible_in_both_languages(phone, "the phone's alert, accepted")

    await phone.get_by_role("button", name="收起").click()
    await expect(phone.locator("#alert")).to_be_hidden()
    await expect(phone.locator("#incidents article").first).to_be_visible()
    await assert_accessible_in_both_languages(phone, "the phone's list")


async def test_the_reports_page_with_a_report_its_exclusions_and_a_record_has_no_serious_problem(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day = await seed(world)
    i2 = day.incidents[1]
    page = await open_report(browser, contexts, world, i2["reported_at"][:10])
    await expect(page.locator("#exclusions tr[data-incident-id]").first).to_be_visible()
    await assert_accessible_in_both_languages(page, "the report with its exclusions")

    late = page.locator(f'#exclusions tr[data-incident-id="{i2["id"]}"][data-tier="3"]')
    await late.get_by_role("button", name=i2["id"]).click()
    await expect(page.locator("#record")).to_have_attribute("data-state", "ready")
    await assert_accessible_in_both_languages(page, "the report with an incident's record")


async def focused(page: Page, selector: str) -> bool:
    return bool(
        await page.evaluate(
            "s => document.activeElement !== null && document.activeElement.matches(s)", selector
        )
    )


async def tab_to(page: Page, selector: str, most: int = 40) -> int:
    """Press Tab until the element ``selector`` names has the focus; how many presses it took.
    Fails if it never comes within ``most``: the keyboard cannot reach it."""
    for presses in range(1, most + 1):
        await page.keyboard.press("Tab")
        if await focused(page, selector):
            return presses
    where = await page.evaluate(
        "() => document.activeElement && document.activeElement.outerHTML.slice(0, 120)"
    )
    raise AssertionError(
        f"{selector} not reached in {most} presses of Tab; the focus is on {where}"
    )


async def test_an_operator_signs_in_reports_opens_a_record_and_switches_language_by_keyboard(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    page = await (await desk_context(browser, contexts)).new_page()
    await page.goto(world.base_url + "/console")
    # The page opens on the form, the cursor in the user name.
    await expect(page.locator("#login input[name=username]")).to_be_focused()
    await page.keyboard.type(operator.name)
    await page.keyboard.press("Tab")
    await page.keyboard.type(operator.password)
    await page.keyboard.press("Enter")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    # From the top of the page to the report form: the header and the map's controls, not a
    # stop per marker.
    presses = await tab_to(page, "#category")
    print(f"Tab presses from the top of the console to the category: {presses}")
    assert presses <= 10, presses
    await page.keyboard.press("ArrowDown")  # the next category: a closed select takes arrows
    await tab_to(page, "#lon", 3)
    await page.keyboard.type(f"{QINGXI[0]:.6f}")
    await page.keyboard.press("Tab")
    await page.keyboard.type(f"{QINGXI[1]:.6f}")
    await page.keyboard.press("Enter")
    result = page.locator("#report-result")
    await expect(result).to_have_attribute("data-state", "ok")
    incident_id = await result.get_attribute("data-incident-id")
    assert incident_id is not None
    await expect(card(page, incident_id)).to_have_count(1)
    found = await violations(page)
    assert found == [], "the console after a report:\n" + "\n".join(found)

    # 历史警情, then the incident's record.
    await page.locator("body").focus()
    await tab_to(page, "#history-open")
    await page.keyboard.press("Enter")
    await expect(page.locator("#history")).to_have_attribute("data-state", "ready")
    await expect(page.locator("#history-title")).to_be_focused()
    await tab_to(page, f'#history tr[data-incident-id="{incident_id}"] button')
    await page.keyboard.press("Enter")
    record = page.locator("#history-record")
    await expect(record).to_have_attribute("data-state", "ready")
    await expect(record).to_have_attribute("data-incident-id", incident_id)

    # The language, from wherever the operator is: Shift+Tab back up to the switch.
    for _ in range(60):
        if await focused(page, "#lang"):
            break
        await page.keyboard.press("Shift+Tab")
    await expect(page.locator("#lang")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("#history-title")).to_have_text("Past incidents")
    await expect(page.locator("#lang")).to_be_focused()
    await page.keyboard.press("Space")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")


async def test_the_phones_alert_takes_the_focus_to_its_named_accept_button(
    world: World, browser: Browser, contexts: Opened
) -> None:
    phone = await alerted_phone(world, browser, contexts)
    alert = phone.locator("#alert")
    await expect(alert).to_be_visible()
    await expect(phone.get_by_role("alertdialog")).to_be_visible()
    accept = phone.get_by_role("button", name="接警", exact=True)
    await expect(accept).to_be_focused()
    # Around the dialog with Tab, and back to the button: nothing behind it takes the focus.
    for _ in range(30):
        await phone.keyboard.press("Tab")
        # Past its last button the focus may rest on the document (the browser's own stops).
        behind = await phone.evaluate(
            "() => { const el = document.activeElement;"
            " return !el || el === document.body || document.getElementById('alert').contains(el)"
            " ? null : el.outerHTML.slice(0, 120); }"
        )
        assert behind is None, f"Tab left the alert for the page it covers: {behind}"
        if await focused(phone, "#accept"):
            break
    await expect(accept).to_be_focused()
    box = await accept.bounding_box()
    assert box is not None and box["height"] >= 48 and box["width"] >= 48, box  # 3rem, thumb-sized
    # Named in the leader's language, and pressed with the keyboard.
    await switch_to(phone, "en")
    await expect(phone.get_by_role("button", name="Accept", exact=True)).to_be_visible()
    await tab_to(phone, "#accept", 10)
    await phone.keyboard.press("Enter")
    await expect(phone.locator("#accept")).to_contain_text("Accepted")


# The focused element's ring against what lies behind it: the better of its outline's and its
# box-shadow's contrast (a two-tone ring reads on light and dark ground alike).
RING_CONTRAST = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return [99, 'the browser'];  // past the last stop
  const rgb = (colour) => {
    const m = colour && colour.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return p.length > 3 && p[3] === 0 ? null : p.slice(0, 3);
  };
  const lum = (c) => {
    const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const ratio = (a, b) => {
    const [dark, light] = [lum(a), lum(b)].sort((x, y) => x - y);
    return (light + 0.05) / (dark + 0.05);
  };
  let behind = null;
  for (let node = el.parentElement; node && !behind; node = node.parentElement) {
    behind = rgb(getComputedStyle(node).backgroundColor);
  }
  behind = behind || [255, 255, 255];
  const style = getComputedStyle(el);
  const rings = [];
  if (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0) {
    rings.push(rgb(style.outlineColor));
  }
  rings.push(rgb(style.boxShadow));
  const best = Math.max(0, ...rings.filter(Boolean).map((c) => ratio(c, behind)));
  return [best, el.outerHTML.slice(0, 80)];
}"""


async def faint_focus(page: Page, stops: int) -> list[str]:
    """Tab through ``stops`` stops from where the focus is; each whose ring is under WCAG's
    3:1 for what shows a control's state against its ground (1.4.11)."""
    faint = []
    for _ in range(stops):
        await page.keyboard.press("Tab")
        best, element = await page.evaluate(RING_CONTRAST)
        if best < 3:
            faint.append(f"{best:.2f}:1 {element}")
    return faint


async def test_the_keyboards_focus_shows_on_light_and_dark_ground_alike(
    world: World, browser: Browser, contexts: Opened
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    await world.report(await world.operator(), category="fire")
    # The console: the bar (dark), the map's controls, the form and the cards (light).
    console = await open_console(browser, contexts, world)
    await expect(console.locator("article.incident")).to_have_count(1)
    await console.locator("body").focus()
    faint = await faint_focus(console, 25)
    assert faint == [], "the console:\n" + "\n".join(faint)

    # The phone's alert, read outdoors.
    phone = await open_phone(browser, contexts, world, leader, QINGXI)
    await expect(phone.locator("#alert")).to_be_visible()
    faint = await faint_focus(phone, 6)
    assert faint == [], "the phone's alert:\n" + "\n".join(faint)

    # The report page's filters.
    page = await (await desk_context(browser, contexts)).new_page()
    await page.goto(world.base_url + "/console/reports")
    faint = await faint_focus(page, 6)
    assert faint == [], "the report page's login:\n" + "\n".join(faint)


async def below_aaa(page: Page) -> list[str]:
    """Text on the page under WCAG's enhanced contrast (1.4.6, AAA: 7:1, 4.5:1 for large
    text), as axe measures it against what is really behind it; one line each."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = await page.evaluate(
        "async () => (await axe.run(document, {runOnly: ['color-contrast-enhanced']})).violations"
    )
    faint = []
    for violation in found:
        for node in violation["nodes"]:
            data = (node.get("any") or [{}])[0].get("data") or {}
            faint.append(
                f"{data.get('contrastRatio')}:1 {data.get('fgColor')} on {data.get('bgColor')}"
                f" {node['target']} {node['html'][:80]}"
            )
    return faint


async def assert_aaa_in_both_languages(page: Page, state: str) -> None:
    await assert_in_both_languages(page, state, below_aaa)


async def test_the_pages_text_meets_the_enhanced_contrast(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    await world.team("mobile", *QINGXI)
    operator = await world.operator()
    # The login with its error (red on white), then the console's and the phone's labels:
    # the live badge, the report button, the hops, the tiers' targets, 无覆盖, a late tier, the
    # alarm and its button, the history.
    page = await (await desk_context(browser, contexts)).new_page()
    await page.goto(world.base_url + "/console")
    await page.get_by_label("用户名").fill(operator.name)
    await page.get_by_label("密码").fill("not-the-password")
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("#login-error")).not_to_be_empty()
    await assert_aaa_in_both_languages(page, "the login with its error")

    incident = await world.report(operator, category="fight")
    console = await open_console(browser, contexts, world)
    tier1 = card(console, incident["id"]).locator('.tier[data-tier="1"]')
    await expect(tier1.locator(".tier-clock")).to_be_visible()
    await assert_aaa_in_both_languages(console, "the console with a live incident")
    world.clock.advance(61)
    await expect(console.locator("#alarm")).to_be_visible(timeout=10_000)
    await expect(tier1).to_have_attribute("data-status", "breached")
    await assert_aaa_in_both_languages(console, "the console with the breach alarm")
    await console.get_by_role("button", name="历史警情").click()
    await expect(console.locator("#history")).to_have_attribute("data-state", "ready")
    await assert_aaa_in_both_languages(console, "the console's history")

    phone = await alerted_phone(world, browser, contexts)
    await expect(phone.locator("#alert")).to_be_visible()
    await assert_aaa_in_both_languages(phone, "the phone's alert")
    await phone.get_by_role("button", name="接警").click()
    await expect(phone.locator("#accept")).to_contain_text("已接警")
    await phone.get_by_role("button", name="收起").click()
    await expect(phone.locator("#incidents article").first).to_be_visible()
    await assert_aaa_in_both_languages(phone, "the phone's list")

    day = await seed(world)
    i2 = day.incidents[1]
    report = await open_report(browser, contexts, world, i2["reported_at"][:10])
    await expect(report.locator("#exclusions tr[data-incident-id]").first).to_be_visible()
    await assert_aaa_in_both_languages(report, "the report page")


async def test_the_consoles_live_events_scrolled_full_are_reached_by_keyboard(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A busy hour fills the live events past their height: the list scrolls, and a keyboard
    alone reaches it, named as its heading names it, to read the earlier lines."""
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    for _ in range(30):
        await world.report(operator, category="fight")
    feed = console.locator("#feed")
    await expect(feed.locator("li")).to_have_count(30, timeout=10_000)
    scrolls = "(el) => el.scrollHeight > el.clientHeight"
    assert await feed.evaluate(scrolls), "the live events should overflow for this test"
    await assert_accessible_in_both_languages(console, "the console with its live events full")
    await feed.focus()
    await expect(feed).to_be_focused()
    await expect(feed).to_have_accessible_name("实时动态")
