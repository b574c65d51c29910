"""The saga history's web page, in a real headless Chromium, against the real services.

The services and the recorder run as processes (the module's `stack`, faults on); orders
go through RabbitMQ; the page is read as a user reads it: the list with its counts and
filters, a saga's flow and timeline, an event's payload, and live updates with no reload.
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from contracts.samples import fresh_order_id, sample_order
from saga_log.ops.client import SagaWatcher
from tests.support import ARTIFACTS, Stack, eventually

try:
    from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - depends on the machine
    HAVE_PLAYWRIGHT = False

CHROMIUM = Path("/usr/bin/chromium")
#: Without the background-networking flags Chromium's own connections are refused on a
#: closed network and slow everything down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ARTIFACTS / "screenshots"
LABEL = {
    "running": "Running",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "needs_attention": "Needs attention",
    "stuck": "Stuck",
}
COUNT_KEYS = ("all", "running", "succeeded", "failed", "needs_attention", "stuck")

if not HAVE_PLAYWRIGHT:
    pytest.skip(
        "playwright is not installed (pip install playwright; the browser is Debian's chromium)",
        allow_module_level=True,
    )
if not CHROMIUM.exists():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)",
        allow_module_level=True,
    )

expect.set_options(timeout=20_000)


@dataclass
class Browsing:
    """Pages of one browser context, with every script error they raise."""

    context: BrowserContext
    base_url: str
    errors: list[str] = field(default_factory=list)

    async def open(self, path: str = "/#/", *, width: int = 1440, height: int = 900) -> Page:
        page = await self.context.new_page()
        await page.set_viewport_size({"width": width, "height": height})
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", self._console)
        await page.goto(self.base_url + path)
        return page

    def _console(self, message: Any) -> None:
        # A request the test itself cut (the "API unreachable" check) is not a page bug.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.errors.append(f"console: {message.text}")

    def assert_no_errors(self) -> None:
        assert self.errors == [], self.errors


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browsing(browser: Browser, stack: Stack) -> AsyncIterator[Browsing]:
    context = await browser.new_context()
    try:
        yield Browsing(context, stack.history_url)
    finally:
        await context.close()


def row(page: Page, saga_id: str) -> Any:
    return page.locator(f'[data-testid="saga-row"][data-saga-id="{saga_id}"]')


def step(page: Page, name: str) -> Any:
    return page.get_by_test_id(f"step-{name}")


async def expect_steps(page: Page, statuses: dict[str, str]) -> None:
    for name, status in statuses.items():
        await expect(step(page, name)).to_have_attribute("data-status", status)


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.evaluate("() => window.scrollTo(0, 0)")  # sticky header at the top
    await page.screenshot(
        path=str(SCREENSHOTS / f"{name}.png"), full_page=True, animations="disabled"
    )


async def recorded(stack: Stack, expected: dict[str, str]) -> dict[str, int]:
    """Wait until the recorder shows each saga in its expected status; its counts then."""
    async with httpx.AsyncClient(base_url=stack.history_url) as client:

        async def probe() -> dict[str, int] | None:
            body = (await client.get("/sagas", params={"limit": 500})).json()
            shown = {saga["saga_id"]: saga["status"] for saga in body["sagas"]}
            if all(shown.get(saga_id) == status for saga_id, status in expected.items()):
                counts: dict[str, int] = body["counts"]
                return counts
            return None

        counts = await eventually(probe, timeout=30)
        assert counts is not None
        return counts


async def place(watcher: SagaWatcher, scenario: str) -> str:
    order_id = fresh_order_id(scenario)
    await watcher.place(sample_order(scenario, order_id=order_id))
    return order_id


async def test_list_and_saga_pages_show_what_happened(
    stack: Stack, watcher: SagaWatcher, browsing: Browsing
) -> None:
    ids = {scenario: await place(watcher, scenario) for scenario in ("ok", "3", "33")}
    for order_id in ids.values():
        await watcher.wait(order_id, timeout=30)
    expected = {"ok": "succeeded", "3": "failed", "33": "needs_attention"}
    counts = await recorded(stack, {ids[s]: status for s, status in expected.items()})

    # The list: every saga with its status, the counts per status.
    page = await browsing.open("/#/")
    await expect(page.get_by_test_id("live-indicator")).to_have_attribute("data-state", "live")
    for scenario, status in expected.items():
        await expect(row(page, ids[scenario])).to_have_attribute("data-status", status)
        await expect(row(page, ids[scenario]).get_by_test_id("row-status")).to_have_text(
            LABEL[status]
        )
    await expect(row(page, ids["33"]).get_by_test_id("row-attention")).to_contain_text(
        "compensation ReleaseInventory failed: ErrReleaseInventory"
    )
    await expect(row(page, ids["3"]).get_by_test_id("row-cause")).to_contain_text(
        "ErrReserveInventory"
    )
    for key in COUNT_KEYS:
        await expect(page.get_by_test_id(f"count-{key}")).to_have_text(
            str(counts["total" if key == "all" else key])
        )
    await screenshot(page, "01-list")

    # A filter chip narrows the list and goes into the URL.
    await page.get_by_test_id("filter-failed").click()
    await expect(page).to_have_url(re.compile(r"#/\?status=failed$"))
    await expect(page.get_by_test_id("filter-failed")).to_have_attribute("aria-current", "true")
    await expect(row(page, ids["3"])).to_be_visible()
    await expect(row(page, ids["ok"])).to_have_count(0)
    await expect(row(page, ids["33"])).to_have_count(0)
    await expect(
        page.locator('[data-testid="saga-row"]:not([data-status="failed"])')
    ).to_have_count(0)
    await screenshot(page, "02-list-failed")

    # Scenario 3: ReserveInventory failed and every compensation ran.
    await row(page, ids["3"]).click()
    await expect(page).to_have_url(re.compile(rf"#/sagas/{ids['3']}$"))
    await expect(page.get_by_test_id("saga-status")).to_have_text("Failed")
    await expect(page.get_by_test_id("saga-cause")).to_contain_text("ErrReserveInventory")
    await expect(page.get_by_test_id("saga-attention")).to_be_hidden()
    await expect_steps(
        page,
        {
            "ProcessOrder": "succeeded",
            "ProcessPayment": "succeeded",
            "ReserveInventory": "failed",
            "ReleaseInventory": "succeeded",
            "ProcessRefund": "succeeded",
            "UpdateOrderStatus": "succeeded",
        },
    )
    await expect(step(page, "ReserveInventory").get_by_test_id("step-error")).to_have_text(
        "ErrReserveInventory"
    )
    await expect(page.get_by_test_id("terminal-failed")).to_have_attribute("data-reached", "true")
    events = page.get_by_test_id("timeline-event")
    await expect(events).to_have_count(7)
    assert await events.evaluate_all("(items) => items.map((item) => item.dataset.type)") == [
        "PlaceOrder",
        "OrderCreated",
        "PaymentDebited",
        "InventoryReserveFailed",
        "InventoryReleased",
        "PaymentRefunded",
        "OrderFailed",
    ]
    failed = page.locator('[data-testid="timeline-event"][data-type="InventoryReserveFailed"]')
    await expect(failed.get_by_test_id("event-brief")).to_contain_text("ErrReserveInventory")
    payload = failed.get_by_test_id("event-payload")
    await expect(payload).to_be_hidden()
    await failed.get_by_test_id("event-toggle").click()
    await expect(payload).to_be_visible()
    await expect(payload).to_contain_text(f'"order_id": "{ids["3"]}"')
    await expect(payload).to_contain_text('"error": "ErrReserveInventory"')
    await expect(failed.get_by_test_id("event-headers")).to_contain_text('"producer": "inventory"')
    await screenshot(page, "03-saga-3-compensated")

    # Scenario 33, opened from the search box: ReleaseInventory failed, the chain stopped.
    await page.get_by_test_id("search-input").fill(ids["33"])
    await page.get_by_test_id("search-input").press("Enter")
    await expect(page).to_have_url(re.compile(rf"#/sagas/{ids['33']}$"))
    await expect(page.get_by_test_id("saga-status")).to_have_text("Needs attention")
    await expect(page.get_by_test_id("saga-attention")).to_contain_text(
        "compensation ReleaseInventory failed: ErrReleaseInventory"
    )
    await expect_steps(
        page,
        {
            "ProcessOrder": "succeeded",
            "ProcessPayment": "succeeded",
            "ReserveInventory": "failed",
            "ReleaseInventory": "failed",
            "ProcessRefund": "pending",
            "UpdateOrderStatus": "pending",
        },
    )
    await expect(step(page, "ReleaseInventory").get_by_test_id("step-error")).to_have_text(
        "ErrReleaseInventory"
    )
    await expect(
        page.locator('[data-testid="timeline-event"][data-type="SagaCompensationFailed"]')
    ).to_contain_text("ErrReleaseInventory")
    # Selecting a step picks out its events.
    await step(page, "ReleaseInventory").click()
    await expect(step(page, "ReleaseInventory")).to_have_attribute("aria-pressed", "true")
    await expect(
        page.locator('[data-testid="timeline-event"][data-type="PaymentDebited"]')
    ).to_have_class(re.compile(r"\bdimmed\b"))
    await expect(
        page.locator('[data-testid="timeline-event"][data-type="SagaCompensationFailed"]')
    ).to_have_class(re.compile(r"\bfocused\b"))
    await screenshot(page, "04-saga-33-needs-attention")

    # The happy path, by its link.
    await page.goto(f"{stack.history_url}/#/sagas/{ids['ok']}")
    await expect(page.get_by_test_id("saga-status")).to_have_text("Succeeded")
    await expect_steps(
        page,
        {
            "ProcessOrder": "succeeded",
            "ProcessPayment": "succeeded",
            "ReserveInventory": "succeeded",
            "ReleaseInventory": "pending",
            "ProcessRefund": "pending",
            "UpdateOrderStatus": "pending",
        },
    )
    await expect(page.get_by_test_id("terminal-succeeded")).to_have_attribute(
        "data-reached", "true"
    )
    await expect(
        page.locator('[data-testid="timeline-event"][data-type="OrderSucceeded"]')
    ).to_have_count(1)
    await screenshot(page, "05-saga-ok-succeeded")
    browsing.assert_no_errors()


async def test_page_updates_itself_and_says_when_the_api_is_unreachable(
    stack: Stack, watcher: SagaWatcher, browsing: Browsing
) -> None:
    order_id = fresh_order_id("2")
    listing = await browsing.open("/#/")
    await expect(listing.get_by_test_id("live-indicator")).to_have_attribute("data-state", "live")
    # A saga page opened before its saga exists waits for it.
    saga = await browsing.open(f"/#/sagas/{order_id}", width=1000, height=700)
    await expect(saga.get_by_test_id("saga-not-found")).to_be_visible()
    await expect(row(listing, order_id)).to_have_count(0)

    await watcher.place(sample_order("2", order_id=order_id))
    await watcher.wait(order_id, timeout=30)

    # Both pages catch up by themselves: no reload, no click.
    await expect(row(listing, order_id)).to_have_attribute("data-status", "failed")
    await expect(row(listing, order_id).get_by_test_id("row-cause")).to_contain_text(
        "ErrProcessPayment"
    )
    await expect(saga.get_by_test_id("saga-not-found")).to_be_hidden()
    await expect(saga.get_by_test_id("saga-status")).to_have_text("Failed")
    await expect_steps(
        saga,
        {
            "ProcessOrder": "succeeded",
            "ProcessPayment": "failed",
            "ReserveInventory": "pending",
            "ReleaseInventory": "pending",
            "ProcessRefund": "succeeded",
            "UpdateOrderStatus": "succeeded",
        },
    )
    await expect(step(saga, "ProcessPayment").get_by_test_id("step-error")).to_have_text(
        "ErrProcessPayment"
    )
    await expect(
        saga.locator('[data-testid="timeline-event"][data-type="OrderFailed"]')
    ).to_have_count(1)
    await screenshot(listing, "06-live-list")

    # An expanded event, and the scroll position, survive the polls that follow.
    debit = saga.locator('[data-testid="timeline-event"][data-type="PaymentDebitFailed"]')
    await debit.get_by_test_id("event-toggle").click()
    await expect(debit.get_by_test_id("event-payload")).to_contain_text("ErrProcessPayment")
    await debit.evaluate("(item) => { item.dataset.marked = 'yes'; }")
    await saga.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    scrolled = await saga.evaluate("() => window.scrollY")
    assert scrolled > 0
    indicator = saga.get_by_test_id("live-indicator")
    for _ in range(2):
        polls = await indicator.get_attribute("data-updated")
        await expect(indicator).not_to_have_attribute("data-updated", polls or "")
    await expect(debit).to_have_attribute("data-marked", "yes")  # the same element, kept
    await expect(debit.locator("details")).to_have_attribute("open", "")
    await expect(debit.get_by_test_id("event-payload")).to_be_visible()
    assert await saga.evaluate("() => window.scrollY") == scrolled
    await screenshot(saga, "07-live-saga-2")

    # The API goes away: the page says so, keeps what it has, and recovers by itself.
    def api(url: str) -> bool:
        return urlsplit(url).path.startswith("/sagas")

    await listing.route(api, lambda route: route.abort())
    await expect(listing.get_by_test_id("api-error")).to_be_visible()
    await expect(listing.get_by_test_id("api-error")).to_contain_text(
        "Cannot reach the saga history API"
    )
    await expect(listing.get_by_test_id("live-indicator")).to_have_attribute(
        "data-state", "offline"
    )
    await expect(row(listing, order_id)).to_be_visible()
    await screenshot(listing, "08-api-unreachable")
    await listing.unroute(api)
    await expect(listing.get_by_test_id("api-error")).to_be_hidden()
    await expect(listing.get_by_test_id("live-indicator")).to_have_attribute("data-state", "live")
    browsing.assert_no_errors()
