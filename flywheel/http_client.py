"""A small blocking HTTP client for the tools, the steps and serving's client (the sidecar keeps
its own pooled keep-alive client, monitoring/upstream.py, for speed).

Standard library only, so it runs in every image. Every call has a timeout. An HTTP status is an
answer, not an exception: `request` returns it, and only the helpers that need a success
(`get_json`) raise `HttpStatusError`. A server that does not answer at all raises `Unreachable`,
naming the URL and why.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT_S = 10.0
JSON = "application/json"


class Unreachable(OSError):
    """No HTTP answer: refused, timed out, name not resolved, connection dropped."""

    def __init__(self, url: str, reason: object):
        super().__init__(f"{url}: no answer ({reason})")
        self.url, self.reason = url, reason


class HttpStatusError(RuntimeError):
    """An answer whose status is not a success, where only a success will do."""

    def __init__(self, url: str, status: int, body: bytes):
        super().__init__(f"{url}: HTTP {status}: {body[:300].decode(errors='replace')}")
        self.url, self.status, self.body = url, status, body


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


def request(url: str, body: bytes | None = None, *, method: str | None = None, headers: dict[str, str] | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S, max_bytes: int | None = None) -> Answer:
    """One request (POST when there is a body, else GET, unless `method` says); the whole answer,
    or its first max_bytes + 1 bytes when max_bytes is given (so a caller can tell it was longer)."""
    prepared = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    # None, not -1, for "all of it": http.client reads a chunked body's framing as data on -1.
    limit = None if max_bytes is None else max_bytes + 1
    try:
        with urllib.request.urlopen(prepared, timeout=timeout_s) as response:
            return Answer(response.status, response.read(limit), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(limit), dict(error.headers or {}))
    except urllib.error.URLError as error:
        raise Unreachable(url, error.reason) from error
    except OSError as error:   # a timeout or a reset while reading
        raise Unreachable(url, error) from error


def post_json(url: str, document: Any, *, headers: dict[str, str] | None = None,
              timeout_s: float = DEFAULT_TIMEOUT_S) -> Answer:
    """POST `document` as JSON; the answer whatever its status."""
    return request(url, json.dumps(document).encode(), headers={"Content-Type": JSON, **(headers or {})},
                   timeout_s=timeout_s)


def get(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
    """The body at `url`; HttpStatusError unless the status is a success."""
    answer = request(url, timeout_s=timeout_s)
    if not answer.ok:
        raise HttpStatusError(url, answer.status, answer.body)
    return answer.body


def get_json(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """The JSON document at `url`; HttpStatusError unless the status is a success."""
    return json.loads(get(url, timeout_s=timeout_s))
