"""Loopback helpers every part that starts a local process shares: a free port (so parallel runs
never collide) and waiting for something to come up."""
from __future__ import annotations

import socket
import subprocess
import time


def free_port() -> int:
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


def stop(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """SIGTERM, up to `timeout_s` to exit cleanly, then SIGKILL."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
