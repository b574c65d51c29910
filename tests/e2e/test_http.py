"""The services' HTTP APIs as a stranger on the network meets them: with a token
configured, nothing but /health answers without it; the page is served under its
Content-Security-Policy; the token opens everything, as a browser's Basic password too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support import Broker, Stack, running_stack

TOKEN = uuid.uuid4().hex


@pytest.fixture(scope="module")
def guarded(broker: Broker, pg_server_url: str) -> Iterator[Stack]:
    with running_stack(
        broker, pg_server_url, services=("order", "fare", "saga_log"), SAGA_HTTP_TOKEN=TOKEN
    ) as stack:
        yield stack


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("saga_log", "/"),
        ("saga_log", "/sagas"),
        ("saga_log", "/sagas/4000"),
        ("saga_log", "/static/app.js"),
        ("saga_log", "/metrics"),
        ("order", "/orders/4000"),
        ("fare", "/fares/wr_1"),
    ],
)
async def test_without_the_token_only_health_answers(
    guarded: Stack, service: str, path: str
) -> None:
    base = f"http://127.0.0.1:{guarded.ports[service]}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        refused = await http.get(path)
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"].startswith("Basic")
        wrong = await http.get(path, headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
        assert wrong.status_code == 401
        assert (await http.get("/health")).status_code == 200
        allowed = await http.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code in (200, 404), allowed.text


async def test_the_page_opens_with_the_token_as_a_browser_password_under_its_csp(
    guarded: Stack,
) -> None:
    async with httpx.AsyncClient(base_url=guarded.history_url, timeout=5) as http:
        page = await http.get("/", auth=("anyone", TOKEN))
        listing = await http.get("/sagas", auth=("anyone", TOKEN))
    assert page.status_code == 200 and "static/app.js" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert listing.status_code == 200 and "sagas" in listing.json()
