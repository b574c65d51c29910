"""The client of the Restate peer: calls the saga through the Restate ingress, one HTTP
request per saga (`POST /OrderSaga/{order_id}/run`), which answers with the saga's result
once it has ended, and runs the phases of load.py.

    python restate_driver.py INGRESS_URL SPEC.json

Runs in .peers/restate-venv (aiohttp), as a process of its own, as our client is.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
from load import read_spec, run_phases


async def main(ingress: str, spec_path: str) -> None:
    spec = read_spec(spec_path)
    connector = aiohttp.TCPConnector(limit=0)  # one keep-alive connection per caller
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def call(order: dict[str, Any]) -> dict[str, Any]:
            async with session.post(
                f"{ingress}/OrderSaga/{order['order_id']}/run", json=order
            ) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {(await response.text())[:200]}")
                result: dict[str, Any] = await response.json()
                return result

        await run_phases(call, spec)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].rstrip("/"), sys.argv[2]))
