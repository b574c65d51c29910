"""The services' uvicorn (saga_log.runtime.http_server): it serves, ticks once a second
instead of ten times, and still stops at once on SIGTERM (the tick no longer paces it)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn

from saga_log.runtime.http_server import QuietServer
from tests.support import ROOT, free_port

APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

def factory():
    return app
"""


def test_it_serves_and_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "tiny_app.py").write_text(textwrap.dedent(APP))
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from saga_log.runtime.http_server import run; "
            f"run('tiny_app:factory', host='127.0.0.1', port={port})",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                    assert answer.read() == b"ok"
                    # The Date header comes from the tick: a tick a second keeps it.
                    assert answer.headers["date"]
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.1)
        # Several ticks go by (a second each): the server keeps serving between them.
        time.sleep(2.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
            assert answer.read() == b"ok"
        server.send_signal(signal.SIGTERM)
        # Shut down, then died of the signal it was sent: uvicorn raises a signal it
        # caught again once it has shut down, so that the exit says why.
        assert server.wait(timeout=30) == -signal.SIGTERM
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


async def test_an_exit_signal_wakes_its_main_loop_before_the_next_tick() -> None:
    server = QuietServer(uvicorn.Config(lambda: None))
    ticks: list[int] = []
    second_tick = asyncio.Event()

    async def on_tick(counter: int) -> bool:
        ticks.append(counter)
        if len(ticks) == 2:
            second_tick.set()
        return server.should_exit

    server.on_tick = on_tick  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    running = loop.create_task(server.main_loop())
    await asyncio.wait_for(second_tick.wait(), 10)  # the first at once, then a second later
    signalled = loop.time()
    # As a signal handler would: from outside the loop.
    threading.Thread(target=server.handle_exit, args=(signal.SIGTERM, None)).start()
    await asyncio.wait_for(running, 5)
    # Woken, not stopped by its next tick, a second after the last.
    assert loop.time() - signalled < 0.5
    # Every tick refreshes the Date header (uvicorn does so when counter % 10 == 0).
    assert all(counter % 10 == 0 for counter in ticks) and len(ticks) == 3
