"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the report tests.

The protocol runs over a pipe (`--remote-debugging-pipe`: commands on the browser's fd 3, replies
and events on its fd 4, each a JSON message ended by NUL), so no port is opened and parallel runs
cannot collide. Networking is off three ways: the page's network is emulated offline, every host
name resolves to nothing (`--host-resolver-rules`), and the background services that would call
home are disabled. Every request the page makes is recorded, so a test can assert there was none
to another origin.

    with Browser() as browser:
        page = browser.open(Path("report.html"))      # loads it, waits for the load event
        page.requests                                  # every URL the page asked for
        page.evaluate("document.title")
        page.screenshot(Path("report.png"))

`assert_offline_and_drawn(page, file)` and `assert_picture(png)` are what the report tests assert
of every page. Also a command, for documentation screenshots:
    python -m tests.support.browser REPORT.html OUT.png [--width 1280] [--height 1600]
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

EXECUTABLE = "chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-pipe")


def executable() -> str | None:
    return shutil.which(EXECUTABLE)


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, workdir: Path | None = None, timeout: float = 30.0):
        path = executable()
        if path is None:
            raise BrowserError(f"{EXECUTABLE} is not installed (make test installs Debian's chromium)")
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
        self.log = (workdir or self.profile) / "chromium.log"
        # Our ends of the two pipes stay here; the browser's ends become its fds 3 and 4. They are
        # moved above 9 first so the shell's redirections cannot overwrite one with the other.
        cmd_read, self._cmd = os.pipe()
        self._evt, evt_write = os.pipe()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_read, evt_write)]
        os.close(cmd_read)
        os.close(evt_write)
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$@" 3<&{high[0]} 4>&{high[1]} {high[0]}<&- {high[1]}>&-', "chromium",
             path, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=high, stdin=subprocess.DEVNULL, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        for fd in high:
            os.close(fd)
        self._next = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._changed = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.version = self.send("Browser.getVersion")["product"]

    # --- the protocol --------------------------------------------------------------------
    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._evt, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._changed:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next += 1
        ident = self._next
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._cmd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._changed:
            while ident not in self._replies:
                if self._closed:
                    raise BrowserError(f"chromium exited during {method}; see {self.log}")
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    raise BrowserError(f"no answer to {method} within {self.timeout}s")
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, since: int = 0, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._changed:
            while True:
                for event in self.events[since:]:
                    if event.get("method") == method and event.get("sessionId") == session:
                        return event
                if self._closed or not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    raise BrowserError(f"no {method} within {timeout or self.timeout}s")

    # --- pages ---------------------------------------------------------------------------
    def open(self, path: Path, width: int = 1280, height: int = 900) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        for method in ("Page.enable", "Network.enable", "Runtime.enable", "Log.enable"):
            self.send(method, session=session)
        self.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": 0,
                                                       "uploadThroughput": 0}, session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session)
        page.navigate(Path(path).resolve().as_uri())
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except BrowserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd, self._evt):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, target: str, session: str):
        self.browser, self.target, self.session = browser, target, session
        self._start = len(browser.events)

    def navigate(self, url: str) -> None:
        mark = len(self.browser.events)
        self.browser.send("Page.navigate", {"url": url}, self.session)
        self.browser.wait_event("Page.loadEventFired", self.session, since=mark)

    def _events(self, method: str) -> list[dict]:
        with self.browser._changed:
            found = list(self.browser.events[self._start:])
        return [e["params"] for e in found if e.get("method") == method and e.get("sessionId") == self.session]

    @property
    def requests(self) -> list[str]:
        """Every URL the page asked for (the document included)."""
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]

    @property
    def errors(self) -> list[str]:
        """Uncaught exceptions and console errors (a blocked load shows up here too)."""
        thrown = [e["exceptionDetails"].get("text", "") + " " + str(e["exceptionDetails"].get("exception", {})
                                                                     .get("description", ""))
                  for e in self._events("Runtime.exceptionThrown")]
        logged = [e["entry"]["text"] for e in self._events("Log.entryAdded") if e["entry"]["level"] == "error"]
        return thrown + logged

    def evaluate(self, expression: str):
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, self.session)
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, out: Path, full_page: bool = True, max_height: int = 0) -> Path:
        """A PNG of the page (the whole page, or its top `max_height` CSS pixels)."""
        params: dict = {"format": "png"}
        if full_page:
            size = self.browser.send("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
            height = min(size["height"], max_height) if max_height else size["height"]
            params.update({"captureBeyondViewport": True,
                           "clip": {"x": 0, "y": 0, "width": size["width"], "height": height, "scale": 1}})
        data = self.browser.send("Page.captureScreenshot", params, self.session)["data"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})



# --- what the report tests assert of a page ---------------------------------------------------
# Every chart: laid out with a size, one bar per bin and side in the DOM, each with a width, and
# each side with at least one bar of non-zero height.
CHARTS = """(() => Array.from(document.querySelectorAll('svg.chart')).map(svg => {
  const box = svg.getBoundingClientRect(), series = svg.dataset.series.split(' ');
  const bars = Array.from(svg.querySelectorAll('rect.bar'));
  return {feature: svg.getAttribute('aria-label'), width: box.width, height: box.height,
          expected: Number(svg.dataset.bars) * series.length, bars: bars.length,
          sized: bars.filter(b => b.getBBox().width > 0 && b.getBBox().height >= 0).length,
          tall: series.map(s => bars.filter(b => b.classList.contains(s) && b.getBBox().height > 0).length)};
}))()"""


def assert_offline_and_drawn(page, report: Path) -> list[dict]:
    assert page.requests == [report.resolve().as_uri()], "the page asked for something besides itself"
    assert page.errors == []
    drawn = page.evaluate(CHARTS)
    assert drawn, "no chart on the page"
    for chart in drawn:
        assert chart["width"] > 100 and chart["height"] > 30, chart
        assert chart["bars"] == chart["expected"] == chart["sized"] > 0, chart
        assert all(n > 0 for n in chart["tall"]), chart
    return drawn


def assert_picture(png: Path, current: bool = True) -> None:
    """Not blank: many colours, among them the reference's bars and (unless the page has no current
    side) the current side's, as the page fills them."""
    from PIL import Image

    from flywheel.report import render
    image = Image.open(png).convert("RGB")
    assert image.width >= 1000 and image.height >= 800
    colours = {c for _, c in image.getcolors(1 << 20)}
    assert len(colours) > 50
    for fill in (render.REFERENCE_FILL,) + ((render.CURRENT_FILL,) if current else ()):
        assert tuple(int(fill[i:i + 2], 16) for i in (1, 3, 5)) in colours, fill


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.browser",
                                     description="Screenshot an HTML file in headless Chromium, offline.")
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=0, help="top CSS pixels to keep (0: the whole page)")
    args = parser.parse_args(argv)
    with Browser() as browser:
        page = browser.open(args.page, width=args.width)
        page.screenshot(args.out, max_height=args.height)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
