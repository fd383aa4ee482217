"""The short way for plain predict requests: recognise one in the bytes a connection received,
and write its answer, without aiohttp's request and response objects.

A request is plain when all of it is already in the buffer and nothing in it needs more than
reading: `POST /v1/models/...` over HTTP/1.1, a visible-ASCII target without percent escapes, a
Content-Length within the body limit and no Transfer-Encoding, Content-Encoding (other than
identity), Expect, Upgrade or Connection other than keep-alive, every header line well formed.
Anything else, or anything in doubt, is not plain: the connection goes to aiohttp, whose parser
and handlers decide (monitoring/server.py). Clients of TF Serving's REST API send plain
requests, and this way costs about half of aiohttp's per request.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from flywheel import serving_protocol

MAX_HEAD = 16384   # a head longer than this is aiohttp's to judge
_TARGET = serving_protocol.PLAIN_TARGET                                # no space, no '%' escape
_HEADER = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([ -~\t]*?)[ \t]*")
_NOT_PLAIN = frozenset(("transfer-encoding", "expect", "upgrade"))
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


@dataclass(slots=True)
class Plain:
    path: str                          # without the query
    path_qs: str
    headers: list[tuple[str, str]]
    body: bytes


def parse(buffer: bytes, max_body: int) -> tuple[Plain, bytes] | None:
    """-> (the plain request at the start of `buffer`, the bytes after it), or None."""
    end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD)
    if end < 0:
        return None
    try:
        lines = buffer[:end].decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        return None
    method, _, rest = lines[0].partition(" ")
    target, _, version = rest.partition(" ")
    if method != "POST" or version != "HTTP/1.1" or not _TARGET.fullmatch(target):
        return None
    headers = []
    length = None
    for line in lines[1:]:
        match = _HEADER.fullmatch(line)
        if match is None:
            return None
        name, value = match.groups()
        lower = name.lower()
        if lower == "content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif lower in _NOT_PLAIN or (lower == "connection" and value.lower() != "keep-alive") \
                or (lower == "content-encoding" and value.lower() not in ("", "identity")):
            return None
        headers.append((name, value))
    if length is None or length > max_body:
        return None
    start = end + 4
    if len(buffer) < start + length:
        return None
    path, _, _ = target.partition("?")
    return Plain(path, target, headers, buffer[start:start + length]), buffer[start + length:]


_date = ["", 0]


def _http_date() -> str:
    now = int(time.time())
    if _date[1] != now:   # formatted once a second, as aiohttp does
        _date[0], _date[1] = formatdate(now, usegmt=True), now
    return _date[0]


def response(status: int, content_type: str, body: bytes, headers: list[tuple[str, str]]) -> bytes:
    head = (f"HTTP/1.1 {status} {_PHRASES.get(status, 'Unknown')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nDate: {_http_date()}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n")
    return head.encode("latin-1", "replace") + body
