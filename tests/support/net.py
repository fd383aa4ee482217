"""Loopback networking for tests: free ports, so parallel runs never collide, and waiting for
something to come up."""
from __future__ import annotations

import socket
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout_s: float, what: str, detail=lambda: ""):
    """check()'s first truthy result, polled every 0.25 s; AssertionError naming `what` (and the
    last error, and `detail()`, e.g. a log's tail) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as err:  # not up yet
            last = err
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last error: {last}){detail()}")
