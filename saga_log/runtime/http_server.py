"""uvicorn, as every service runs it: one process, the service's ASGI factory, and a
main loop that ticks once a second instead of ten times."""

from __future__ import annotations

import asyncio
import sys
from types import FrameType

import uvicorn


class QuietServer(uvicorn.Server):
    """uvicorn's server waking once a second, not ten times. Its tick refreshes the Date
    header (once a second anyway) and looks for an exit signal; ten wake-ups a second cost
    an idle service 0.15 % of a core (docs/performance.md, idle cost). A signal still
    stops it at once: it wakes the loop."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # each tick is uvicorn's once-a-second tick
            waking = loop.create_task(wake.wait())
            await asyncio.wait({waking}, timeout=1.0)
            waking.cancel()
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # Called from a signal handler: the loop is woken thread-safely.
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)


def run(app_factory: str, *, host: str, port: int) -> None:
    """Serve `app_factory` (`"pkg.module:app"`) until SIGTERM or SIGINT."""
    config = uvicorn.Config(
        app_factory, factory=True, host=host, port=port, log_config=None, lifespan="on"
    )
    server = QuietServer(config)
    server.run()
    if not server.started:
        sys.exit(3)  # what uvicorn.run exits with when the app cannot start
