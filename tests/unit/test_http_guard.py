"""Every service's HTTP server: the token when one is configured, the security headers
always, /health open to probes."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from saga_log.runtime.http_guard import CONTENT_SECURITY_POLICY, HttpGuard, presented_token
from saga_log.runtime.settings import RuntimeSettings


def client(token: str) -> httpx.AsyncClient:
    async def page(request: object) -> PlainTextResponse:
        return PlainTextResponse("payloads")

    routes = [Route("/sagas", page), Route("/health", page)]
    app = Starlette(routes=routes, middleware=[Middleware(HttpGuard, token=token)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


async def test_without_the_token_nothing_but_health_answers() -> None:
    http = client("s3cret")
    refused = await http.get("/sagas")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert "SAGA_HTTP_TOKEN" in refused.json()["error"]
    assert "payloads" not in refused.text
    assert (await http.get("/sagas", headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert (await http.get("/sagas", auth=("anyone", "wrong"))).status_code == 401
    assert (await http.get("/sagas", headers={"Authorization": "Basic !!!"})).status_code == 401
    assert (await http.get("/health")).status_code == 200


async def test_the_token_opens_every_route_as_bearer_or_as_basic_password() -> None:
    http = client("s3cret")
    assert (await http.get("/sagas", headers={"Authorization": "Bearer s3cret"})).text == "payloads"
    assert (await http.get("/sagas", auth=("browser", "s3cret"))).text == "payloads"


@pytest.mark.parametrize("token", ["", "s3cret"])
async def test_every_response_carries_the_security_headers(token: str) -> None:
    response = await client(token).get("/sagas")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_presented_token_reads_bearer_and_basic_only() -> None:
    assert presented_token("Bearer abc") == "abc"
    assert presented_token("basic dXNlcjpwYXNz") == "pass"
    assert presented_token("Digest abc") is None
    assert presented_token("Basic bm9jb2xvbg==") is None  # "nocolon"


def test_services_listen_on_this_machine_only_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGA_HTTP_HOST", raising=False)
    assert RuntimeSettings().http_host == "127.0.0.1"
