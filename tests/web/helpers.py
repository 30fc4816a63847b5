"""Helpers of the web-page tests: a free loopback port, polling, full-page screenshots under
``data/screenshots/`` and an ASGI app served in a thread."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parents[2] / "data" / "screenshots"
WAIT_S = 60.0  # the longest any page step may take before the test fails


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float = WAIT_S, every: float = 0.05, what: str = "condition"):
    """Poll ``condition()`` until it returns something truthy (returned); fail after
    ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def screenshot(driver, name: str, height: int | None = None) -> Path:
    """Save the whole page (up to 2400 px tall, or ``height``) as ``data/screenshots/NAME``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    full = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(height or full + 20, 2400))
    driver.execute_script("window.scrollTo(0, 0)")
    path = SCREENSHOTS / name
    driver.save_screenshot(str(path))
    driver.set_window_size(width, 1400)
    return path


class ThreadServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a daemon thread (``url``, ``stop()``)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, 20, what="the test server to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
