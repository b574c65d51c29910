"""The saga history's web page, in a real headless Chromium, against the real services.

The services and the recorder run as processes (the module's `stack`, faults on); orders
and fares go through RabbitMQ; the page is read as a user reads it: the list with its
counts and its status and type filters, a saga's flow (drawn from its declaration, for
either saga) and timeline, an event's payload, what a running saga waits for, and live
updates with no reload. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from contracts import FARE, ORDER
from contracts.samples import LAB_FARE, fresh_fare_id, fresh_order_id, sample_fare, sample_order
from saga_log.ops.client import SagaWatcher
from tests.support import ARTIFACTS, Stack, eventually

try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        Page,
        Route,
        async_playwright,
        expect,
    )

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

    async def open(
        self,
        path: str = "/#/",
        *,
        width: int = 1440,
        height: int = 900,
        rewrite: tuple[re.Pattern[str], Callable[[Route], Awaitable[None]]] | None = None,
    ) -> Page:
        """A new page at `path`; `rewrite` (URL pattern, handler) intercepts its requests."""
        page = await self.context.new_page()
        await page.set_viewport_size({"width": width, "height": height})
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", self._console)
        if rewrite is not None:
            await page.route(*rewrite)
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


def row(page: Page, saga_id: str, saga_type: str | None = None) -> Any:
    of_type = f'[data-saga-type="{saga_type}"]' if saga_type else ""
    return page.locator(f'[data-testid="saga-row"][data-saga-id="{saga_id}"]{of_type}')


def step(page: Page, name: str) -> Any:
    return page.get_by_test_id(f"step-{name}")


def edge(page: Page, key: str) -> Any:
    return page.locator(f'[data-edge="{key}"]')


def event(page: Page, event_type: str) -> Any:
    return page.locator(f'[data-testid="timeline-event"][data-type="{event_type}"]')


async def expect_steps(page: Page, statuses: dict[str, str]) -> None:
    for name, status in statuses.items():
        await expect(step(page, name)).to_have_attribute("data-status", status)


async def expect_edges(page: Page, taken: dict[str, bool]) -> None:
    for key, yes in taken.items():
        await expect(edge(page, key)).to_have_attribute("data-taken", str(yes).lower())


async def expect_flow_of(page: Page, flow: dict[str, Any]) -> None:
    """The page draws exactly the declared flow: its steps, of their kinds and services,
    and its edges, each with a line."""
    steps = [*flow["forward"], *flow["compensations"]]
    await expect(page.locator("[data-testid^='step-'][data-step]")).to_have_count(len(steps))
    for declared in steps:
        await expect(step(page, declared["name"])).to_have_attribute("data-kind", declared["kind"])
        await expect(step(page, declared["name"]).get_by_test_id("step-service")).to_have_text(
            f"{declared['service']} · {declared['kind']}"
        )
    keys = {f"{e['from']}-{e['to']}" for e in flow["edges"]}
    await expect(page.locator("[data-edge]")).to_have_count(len(keys))
    drawn = await page.locator("[data-edge]").evaluate_all(
        "(edges) => edges.map((g) => [g.dataset.edge, g.querySelector('.edge-line')"
        ".getAttribute('d') || ''])"
    )
    assert {key for key, _ in drawn} == keys
    assert all(re.match(r"^M [\d.-]+ [\d.-]+ L ", line) for _, line in drawn), drawn


async def centre(locator: Any) -> tuple[float, float]:
    box = await locator.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


async def expect_beneath(page: Page, compensation: str, forward: str) -> None:
    """`compensation` is drawn in the column of `forward`, below it."""
    (cx, cy), (fx, fy) = await centre(step(page, compensation)), await centre(step(page, forward))
    assert abs(cx - fx) < 2 and cy > fy, (compensation, (cx, cy), forward, (fx, fy))


async def arrow_tip(page: Page, key: str) -> dict[str, float]:
    tip: dict[str, float] = await edge(page, key).evaluate(
        "(g) => { const r = g.querySelector('.edge-head').getBoundingClientRect();"
        " return {x: r.x + r.width / 2, top: r.top, bottom: r.bottom}; }"
    )
    return tip


async def expect_arrow_into_top_of(page: Page, key: str, target: str) -> None:
    """The arrow `key` ends on the top of `target`'s box (wherever its source is)."""
    box = await step(page, target).bounding_box()
    assert box is not None
    tip = await arrow_tip(page, key)
    assert box["x"] < tip["x"] < box["x"] + box["width"], (key, tip, box)
    assert abs(tip["bottom"] - box["y"]) < 4, (key, tip, box)


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.evaluate("() => window.scrollTo(0, 0)")  # sticky header at the top
    await page.mouse.move(0, 0)  # no hover left on whatever the test clicked last
    await page.screenshot(
        path=str(SCREENSHOTS / f"{name}.png"), full_page=True, animations="disabled"
    )


async def recorded(
    stack: Stack, expected: dict[str, str], *, saga_type: str | None = None
) -> dict[str, int]:
    """Wait until the recorder shows each saga (of `saga_type`, if given) in its expected
    status; the counts (of that type) then."""
    params: dict[str, str | int] = {"limit": 500, **({"type": saga_type} if saga_type else {})}
    async with httpx.AsyncClient(base_url=stack.history_url) as client:

        async def probe() -> dict[str, int] | None:
            body = (await client.get("/sagas", params=params)).json()
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
    await expect(page.get_by_test_id("type-all")).to_have_attribute("aria-current", "true")
    for scenario, status in expected.items():
        await expect(row(page, ids[scenario])).to_have_attribute("data-status", status)
        await expect(row(page, ids[scenario]).get_by_test_id("row-status")).to_have_text(
            LABEL[status]
        )
        await expect(row(page, ids[scenario]).get_by_test_id("row-type")).to_have_text("order")
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
    await expect(page).to_have_url(re.compile(rf"#/sagas/{ids['3']}\?type=order$"))
    await expect(page.get_by_test_id("saga-status")).to_have_text("Failed")
    await expect(page.get_by_test_id("saga-type")).to_have_text("order")
    await expect(page.get_by_test_id("saga-expecting")).to_be_hidden()
    await expect_flow_of(page, ORDER.flow())
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
    await expect_edges(
        page,
        {
            "start-ProcessOrder": True,
            "ProcessOrder-ProcessPayment": True,
            "ProcessPayment-ReserveInventory": True,
            "ReserveInventory-succeeded": False,
            "ProcessOrder-UpdateOrderStatus": False,
            "ProcessPayment-ProcessRefund": False,
            "ReserveInventory-ReleaseInventory": True,
            "ReleaseInventory-ProcessRefund": True,
            "ProcessRefund-UpdateOrderStatus": True,
            "UpdateOrderStatus-failed": True,
        },
    )
    for compensation, forward in (
        ("UpdateOrderStatus", "ProcessOrder"),
        ("ProcessRefund", "ProcessPayment"),
        ("ReleaseInventory", "ReserveInventory"),
    ):
        await expect_beneath(page, compensation, forward)
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
    failed = event(page, "InventoryReserveFailed")
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
    await expect_edges(
        page,
        {
            "ReserveInventory-ReleaseInventory": True,
            "ReleaseInventory-ProcessRefund": False,
            "ProcessRefund-UpdateOrderStatus": False,
            "UpdateOrderStatus-failed": False,
        },
    )
    await expect(page.get_by_test_id("terminal-failed")).to_have_attribute("data-reached", "false")
    # The compensation's failure is its own typed event, marked as wanting attention.
    release_failed = event(page, "InventoryReleaseFailed")
    await expect(release_failed).to_contain_text("ErrReleaseInventory")
    await expect(release_failed).to_have_class(re.compile(r"\btone-attention\b"))
    # Selecting a step picks out its events.
    await step(page, "ReleaseInventory").click()
    await expect(step(page, "ReleaseInventory")).to_have_attribute("aria-pressed", "true")
    await expect(event(page, "PaymentDebited")).to_have_class(re.compile(r"\bdimmed\b"))
    await expect(release_failed).to_have_class(re.compile(r"\bfocused\b"))
    await expect(event(page, "InventoryReserveFailed")).to_have_class(re.compile(r"\bfocused\b"))
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
    await expect_edges(
        page,
        {"ReserveInventory-succeeded": True, "ReserveInventory-ReleaseInventory": False},
    )
    await expect(event(page, "OrderSucceeded")).to_have_count(1)
    await expect(event(page, "OrderSucceeded")).to_have_class(re.compile(r"\btone-success\b"))
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
    await expect(event(saga, "OrderFailed")).to_have_count(1)
    await screenshot(listing, "06-live-list")

    # An expanded event, and the scroll position, survive the polls that follow.
    debit = event(saga, "PaymentDebitFailed")
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


async def test_fare_saga_page_draws_its_own_flow_and_the_list_filters_by_type(
    stack: Stack, watcher: SagaWatcher, browsing: Browsing
) -> None:
    credit, refund = fresh_fare_id(), fresh_fare_id()
    await watcher.start(FARE, sample_fare("fail_credit", fare_id=credit))
    await watcher.start(FARE, sample_fare("fail_refund", fare_id=refund))
    order_id = await place(watcher, "ok")
    for saga_id in (credit, refund, order_id):
        await watcher.wait(saga_id, timeout=30)
    counts = await recorded(stack, {credit: "failed", refund: "needs_attention"}, saga_type="fare")
    await recorded(stack, {order_id: "succeeded"}, saga_type="order")

    # The type filter: only fares, with the fares' counts, kept in the URL with the status.
    page = await browsing.open("/#/")
    await expect(row(page, order_id)).to_be_visible()
    await page.get_by_test_id("type-fare").click()
    await expect(page).to_have_url(re.compile(r"#/\?type=fare$"))
    await expect(page.get_by_test_id("type-fare")).to_have_attribute("aria-current", "true")
    await expect(row(page, credit)).to_have_attribute("data-status", "failed")
    await expect(row(page, refund)).to_have_attribute("data-status", "needs_attention")
    await expect(row(page, order_id)).to_have_count(0)
    await expect(
        page.locator('[data-testid="saga-row"]:not([data-saga-type="fare"])')
    ).to_have_count(0)
    await expect(row(page, credit).get_by_test_id("row-type")).to_have_text("fare")
    await expect(row(page, refund).get_by_test_id("row-attention")).to_contain_text(
        "compensation RefundFare failed: RefundException"
    )
    for key in COUNT_KEYS:
        await expect(page.get_by_test_id(f"count-{key}")).to_have_text(
            str(counts["total" if key == "all" else key])
        )
    await page.get_by_test_id("filter-failed").click()
    await expect(page).to_have_url(re.compile(r"#/\?type=fare&status=failed$"))
    await expect(page.get_by_test_id("type-fare")).to_have_attribute("aria-current", "true")
    await expect(row(page, credit)).to_be_visible()
    await expect(row(page, refund)).to_have_count(0)
    await screenshot(page, "09-list-fares-failed")

    # fail_credit: the credit failed, the charge was refunded, the fare marked failed.
    await row(page, credit).click()
    await expect(page).to_have_url(re.compile(rf"#/sagas/{credit}\?type=fare$"))
    await expect(page.get_by_test_id("saga-type")).to_have_text("fare")
    await expect(page.get_by_test_id("saga-view")).to_contain_text("Wild Rydes fare saga")
    await expect(page.get_by_test_id("saga-status")).to_have_text("Failed")
    await expect(page.get_by_test_id("saga-cause")).to_contain_text("AccountCreditException")
    await expect_flow_of(page, FARE.flow())
    await expect_steps(
        page,
        {
            "RegisterFare": "succeeded",
            "ChargeFare": "succeeded",
            "CreditCustomerAccount": "failed",
            "RefundFare": "succeeded",
            "SetFareStatusFailed": "succeeded",
        },
    )
    await expect(step(page, "CreditCustomerAccount").get_by_test_id("step-error")).to_have_text(
        "AccountCreditException"
    )
    await expect_edges(
        page,
        {
            "start-RegisterFare": True,
            "RegisterFare-ChargeFare": True,
            "ChargeFare-CreditCustomerAccount": True,
            "CreditCustomerAccount-succeeded": False,
            "ChargeFare-SetFareStatusFailed": False,
            "CreditCustomerAccount-RefundFare": True,
            "RefundFare-SetFareStatusFailed": True,
            "SetFareStatusFailed-failed": True,
        },
    )
    await expect(page.get_by_test_id("terminal-failed")).to_have_attribute("data-reached", "true")
    await expect(page.get_by_test_id("terminal-succeeded")).to_have_attribute(
        "data-reached", "false"
    )
    # Each compensation beneath the step it undoes; a failure that is not straight down
    # still arrives on top of its compensation.
    await expect_beneath(page, "SetFareStatusFailed", "RegisterFare")
    await expect_beneath(page, "RefundFare", "ChargeFare")
    await expect_arrow_into_top_of(page, "ChargeFare-SetFareStatusFailed", "SetFareStatusFailed")
    await expect_arrow_into_top_of(page, "CreditCustomerAccount-RefundFare", "RefundFare")
    for present in (
        "SubmitFare",
        "FareRegistered",
        "FareCharged",
        "CustomerAccountCreditFailed",
        "FareRefunded",
        "FareProcessingFailed",
    ):
        await expect(event(page, present)).to_have_count(1)
    await expect(event(page, "FareProcessingFailed")).to_have_class(
        re.compile(r"\btone-terminal-failed\b")
    )
    # A step's events are those that start or end it.
    await step(page, "RefundFare").click()
    await expect(event(page, "CustomerAccountCreditFailed")).to_have_class(
        re.compile(r"\bfocused\b")
    )
    await expect(event(page, "FareRefunded")).to_have_class(re.compile(r"\bfocused\b"))
    await expect(event(page, "FareRegistered")).to_have_class(re.compile(r"\bdimmed\b"))
    await step(page, "RefundFare").click()
    await expect(event(page, "FareRegistered")).not_to_have_class(re.compile(r"\bdimmed\b"))
    # The card travels sealed and is recorded masked: nowhere in clear on the page.
    await page.get_by_test_id("expand-all").click()
    await expect(event(page, "SubmitFare").get_by_test_id("event-payload")).to_be_visible()
    for clear in (LAB_FARE["cc"], LAB_FARE["cc"].replace(" ", "")):
        await expect(page.locator("main")).not_to_contain_text(clear)
    await page.get_by_test_id("collapse-all").click()
    await screenshot(page, "10-saga-fare-credit-failed")

    # fail_refund: the refund failed, the chain stopped, a human must look.
    await page.goto(f"{stack.history_url}/#/sagas/{refund}?type=fare")
    await expect(page.get_by_test_id("saga-status")).to_have_text("Needs attention")
    await expect(page.get_by_test_id("saga-attention")).to_contain_text(
        "compensation RefundFare failed: RefundException"
    )
    await expect_steps(
        page,
        {
            "RegisterFare": "succeeded",
            "ChargeFare": "succeeded",
            "CreditCustomerAccount": "failed",
            "RefundFare": "failed",
            "SetFareStatusFailed": "pending",
        },
    )
    await expect(step(page, "RefundFare").get_by_test_id("step-error")).to_have_text(
        "RefundException"
    )
    await expect_edges(
        page,
        {
            "CreditCustomerAccount-RefundFare": True,
            "RefundFare-SetFareStatusFailed": False,
            "SetFareStatusFailed-failed": False,
        },
    )
    await expect(page.get_by_test_id("terminal-failed")).to_have_attribute("data-reached", "false")
    await expect(event(page, "FareRefundFailed")).to_have_class(re.compile(r"\btone-attention\b"))
    await screenshot(page, "11-saga-fare-refund-failed")
    browsing.assert_no_errors()


async def test_a_running_saga_says_what_it_waits_for(
    stack: Stack, watcher: SagaWatcher, browsing: Browsing
) -> None:
    order_id = fresh_order_id("ok")
    await asyncio.to_thread(stack.stop, "inventory")
    try:
        await watcher.place(sample_order("ok", order_id=order_id))
        page = await browsing.open(f"/#/sagas/{order_id}")
        await expect(page.get_by_test_id("saga-status")).to_have_text("Running")
        await expect_steps(
            page,
            {
                "ProcessOrder": "succeeded",
                "ProcessPayment": "succeeded",
                "ReserveInventory": "running",
            },
        )
        waiting = page.get_by_test_id("saga-expecting")
        await expect(waiting).to_contain_text(
            "Waiting for InventoryReserved or InventoryReserveFailed"
        )
        await expect(waiting).to_contain_text("the outcome of ReserveInventory (inventory service)")
        await expect_edges(
            page, {"ProcessPayment-ReserveInventory": True, "ReserveInventory-succeeded": False}
        )
        await expect(edge(page, "ProcessPayment-ReserveInventory")).to_have_class(
            re.compile(r"\bactive\b")
        )
        listing = await browsing.open("/#/?status=running")
        await expect(row(listing, order_id).get_by_test_id("row-expecting")).to_have_text(
            "waiting for InventoryReserved or InventoryReserveFailed"
        )
        await screenshot(page, "12-saga-running-waits")

        # Past the saga deadline the recorder calls it stuck (faked here: the recorder's
        # own answer with its status rewritten, as the deadline is ten minutes).
        async def past_deadline(route: Route) -> None:
            response = await route.fetch()
            body = await response.json()
            body["saga"]["status"] = "stuck"
            await route.fulfill(response=response, json=body)

        stuck = await browsing.open(
            f"/#/sagas/{order_id}", rewrite=(re.compile(rf"/sagas/{order_id}(\?|$)"), past_deadline)
        )
        await expect(stuck.get_by_test_id("saga-status")).to_have_text("Stuck")
        stuck_waiting = stuck.get_by_test_id("saga-expecting")
        await expect(stuck_waiting).to_have_attribute("data-status", "stuck")
        await expect(stuck_waiting).to_contain_text("Stuck: no event since")
        await expect(stuck_waiting).to_contain_text(
            "It waits for InventoryReserved or InventoryReserveFailed"
        )
        await screenshot(stuck, "13-saga-stuck-waits")
        await stuck.close()
    finally:
        await asyncio.to_thread(stack.start, "inventory")

    # The message waited on its queue: the saga goes on, and the page follows by itself.
    await watcher.wait(order_id, timeout=30)
    await expect(page.get_by_test_id("saga-status")).to_have_text("Succeeded")
    await expect(page.get_by_test_id("saga-expecting")).to_be_hidden()
    await expect(row(listing, order_id)).to_have_count(0)
    browsing.assert_no_errors()


async def test_an_id_shared_by_two_saga_types_offers_the_choice(
    stack: Stack, watcher: SagaWatcher, browsing: Browsing
) -> None:
    shared = fresh_order_id("ok")
    await watcher.place(sample_order("ok", order_id=shared))
    await watcher.start(FARE, sample_fare("ok", fare_id=shared))
    await recorded(stack, {shared: "succeeded"}, saga_type="order")
    await recorded(stack, {shared: "succeeded"}, saga_type="fare")

    page = await browsing.open("/#/")
    await expect(row(page, shared)).to_have_count(2)
    await expect(row(page, shared, "order").get_by_test_id("row-type")).to_have_text("order")
    await expect(row(page, shared, "fare").get_by_test_id("row-type")).to_have_text("fare")

    # The search box cannot tell which one is meant: the page asks.
    await page.get_by_test_id("search-input").fill(shared)
    await page.get_by_test_id("search-input").press("Enter")
    await expect(page).to_have_url(re.compile(rf"#/sagas/{shared}$"))
    choice = page.get_by_test_id("saga-choice")
    await expect(choice).to_contain_text("2 sagas of different types have this id")
    await expect(page.get_by_test_id("saga-not-found")).to_be_hidden()
    await screenshot(page, "14-shared-id-choice")
    await choice.get_by_test_id("choose-fare").click()
    await expect(page).to_have_url(re.compile(rf"#/sagas/{shared}\?type=fare$"))
    await expect(page.get_by_test_id("saga-type")).to_have_text("fare")
    await expect(page.get_by_test_id("saga-status")).to_have_text("Succeeded")
    await expect_steps(
        page,
        {
            "RegisterFare": "succeeded",
            "ChargeFare": "succeeded",
            "CreditCustomerAccount": "succeeded",
        },
    )
    await expect(step(page, "ProcessOrder")).to_have_count(0)

    # From the list, each row opens its own saga.
    await page.goto(f"{stack.history_url}/#/")
    await row(page, shared, "order").click()
    await expect(page).to_have_url(re.compile(rf"#/sagas/{shared}\?type=order$"))
    await expect(page.get_by_test_id("saga-type")).to_have_text("order")
    await expect(step(page, "ProcessOrder")).to_have_attribute("data-status", "succeeded")
    await expect(step(page, "RegisterFare")).to_have_count(0)
    browsing.assert_no_errors()
