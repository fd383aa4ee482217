"""An aiohttp application served on its own event loop in a daemon thread, on loopback, so a
test can talk to it with blocking clients. Used for the sidecar and for small upstreams."""
from __future__ import annotations

import asyncio
import threading


class AppThread:
    def __init__(self, app, port: int, timeout: float = 30.0, what: str = "app"):
        from aiohttp import web

        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def serve():
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", port).start()
            started.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(serve()), self.loop.run_forever()),
                                       daemon=True)
        self.thread.start()
        if not started.wait(timeout):
            raise TimeoutError(f"{what} did not start on port {port}")

    def stop(self, timeout: float = 30.0) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
