"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Log in, check in as a member in the chat simulator, add an FAQ in the editor and get it
answered in the simulator, create an announcement, open the retention chart. Screenshots of
the main pages go to artifacts/screenshots/ (gitignored; see the README).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.web import Console, start_console
from tests.conftest import ROOM, XIAOMING, BotHarness, make_settings

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
TOKEN = "browser-test-token-0123456789"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
TIMEOUT_MS = 15_000

try:
    from playwright.async_api import Page, async_playwright, expect
except ImportError:  # pragma: no cover - the test extra installs it
    pytest.skip("playwright is not installed (pip install -e '.[test]')", allow_module_level=True)
if not Path(CHROMIUM).exists():  # pragma: no cover - scripts/test installs it
    pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)",
                allow_module_level=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", web={"enabled": True, "port": 0, "token": TOKEN})


@pytest.fixture
async def console(bot: BotHarness) -> AsyncIterator[Console]:
    c = await start_console(bot.app, bot.gw)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture
async def page(console: Console) -> AsyncIterator[Page]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            ctx = await browser.new_context(viewport={"width": 1280, "height": 900},
                                            locale="zh-CN")
            p = await ctx.new_page()
            p.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            p.on("pageerror", lambda e: errors.append(str(e)))
            yield p
            assert errors == [], f"JavaScript errors: {errors}"
        finally:
            await browser.close()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def log_in(page: Page, console: Console) -> None:
    await page.goto(console.url)
    await expect(page).to_have_url(console.url + "login")
    await shot(page, "login")
    await page.fill("#token", TOKEN)
    await page.click("#login button[type=submit]")
    await expect(page.locator("h1")).to_have_text("概览")


async def loaded(page: Page, img_id: str) -> None:
    """Until the <img> has a decoded picture (a chart PNG from the server)."""
    await page.wait_for_function(
        "id => { const i = document.getElementById(id);"
        " return i.complete && i.naturalWidth > 100; }",
        arg=img_id)


async def open_chat(page: Page, console: Console, member: str = XIAOMING) -> None:
    await page.goto(console.url + "chat")
    await page.locator("#sim-room").select_option(ROOM)
    await page.locator("#sim-member").select_option(member)
    await expect(page.locator('#sim-log[data-ready="1"]')).to_have_count(1)


async def say(page: Page, text: str) -> Any:
    """Type as the chosen member; returns the locator of the bot's newest reply."""
    replies = page.locator("#sim-log li.bot .bubble")
    before = await replies.count()
    await page.fill("#sim-text", text)
    await page.press("#sim-text", "Enter")
    await expect(replies).to_have_count(before + 1)
    return replies.nth(before)


async def test_console_in_a_real_browser(bot: BotHarness, console: Console, page: Page) -> None:
    await log_in(page, console)
    await expect(page.locator("#rooms")).to_contain_text("健身打卡群")
    await loaded(page, "activity-chart")
    await shot(page, "dashboard")

    # A member checks in from the simulator; the bot's reply arrives over the WebSocket.
    await open_chat(page, console)
    reply = await say(page, "签到")
    await expect(reply).to_contain_text("签到成功")
    await expect(reply).to_contain_text("@小明")
    assert bot.store.checkins.stats(ROOM, XIAOMING).total == 1
    await shot(page, "chat")

    # An FAQ added in the editor answers in the simulator at once.
    await page.goto(console.url + f"faq?room={ROOM}")
    await page.fill("#faq-add input[name=questions]", "停车在哪里; 哪里可以停车")
    await page.fill("#faq-add textarea[name=answer]", "地下二层 B2 停车场，凭小票免费两小时")
    await page.click("#faq-add button[type=submit]")
    await expect(page.locator(".flash.ok")).to_contain_text("#1")
    await expect(page.locator("#faq-entries")).to_contain_text("停车在哪里")
    await shot(page, "faq")
    await open_chat(page, console)
    reply = await say(page, "请问停车在哪里？")
    await expect(reply).to_contain_text("地下二层 B2 停车场")
    await page.goto(console.url + f"faq?room={ROOM}")
    await expect(page.locator("#faq-entries tbody tr").first).to_contain_text("1")  # one hit

    # An announcement: preview the draft, create it, see it listed with its next time.
    await page.goto(console.url + f"announcements?room={ROOM}")
    await page.locator("#announce-new select[name=kind]").select_option("every")
    await page.fill("#announce-new input[name=when]", "2h")
    await page.fill("#announce-new textarea[name=text]", "今天是{weekday}，{room}的朋友记得喝水")
    await page.click("#preview-btn")
    await expect(page.locator("#preview")).to_contain_text("健身打卡群的朋友记得喝水")
    await page.click("#announce-new button[type=submit]")
    await expect(page.locator(".flash.ok")).to_contain_text("#1")
    await expect(page.locator("#announcements")).to_contain_text("记得喝水")
    await shot(page, "announcements")
    assert [a.text for a in bot.ctx.services["announcements"].list(ROOM)] == [
        "今天是{weekday}，{room}的朋友记得喝水"]

    # The retention page shows the cohort chart (a real PNG, rendered).
    await page.goto(console.url + f"retention?room={ROOM}")
    await expect(page.locator("#retention-chart")).to_be_visible()
    await loaded(page, "retention-chart")
    await expect(page.locator("#cohorts")).to_be_visible()
    await shot(page, "retention")

    for path, name in (("members", "members"), ("events", "events"),
                       ("lotteries", "lotteries"), ("audit", "audit")):
        await page.goto(console.url + f"{path}?room={ROOM}")
        await expect(page.locator("h1")).to_be_visible()
        await shot(page, name)
    await expect(page.locator("#audit")).to_contain_text("/announce every 2h")
