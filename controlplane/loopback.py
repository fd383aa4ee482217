"""Ports and readiness on loopback for the control plane's processes.

The control plane stands alone (it imports nothing of Flywheel: it is the cluster the product is
tested against, not part of it), so it keeps these few lines of its own.
"""
from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A port nothing listens on now, so parallel control planes never collide."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout_s: float, what: str, detail=lambda: "", interval_s: float = 0.25, alive=None):
    """check()'s first truthy result, polled every `interval_s`; an exception from check() means
    "not up yet". `alive()`, when given, is called before each poll and its exception ends the
    wait at once (a process that exited). TimeoutError naming `what`, the last error and
    `detail()` (e.g. a log's tail) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            result = check()
            if result:
                return result
        except Exception as err:  # not up yet
            last = err
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last}){detail()}")
