"""The shared blocking HTTP client: a status is an answer, a server that does not answer is
`Unreachable`, a body can be bounded."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flywheel import http_client
from flywheel.loopback import free_port


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # chunked answers need 1.1

    def do_GET(self):
        if self.path == "/chunked":   # as Prometheus answers a large query
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b'{"result": ', b'[1, 2, 3]', b'}'):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        status = 404 if self.path == "/missing" else 200
        body = json.dumps({"error": "no such thing"} if status == 404 else {"path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_answers_whatever_their_status(url):
    assert http_client.get_json(f"{url}/here") == {"path": "/here"}
    missing = http_client.request(f"{url}/missing")
    assert missing.status == 404 and not missing.ok and missing.json() == {"error": "no such thing"}
    with pytest.raises(http_client.HttpStatusError, match="HTTP 404"):
        http_client.get_json(f"{url}/missing")
    assert http_client.post_json(f"{url}/echo", {"a": 1}).json() == {"a": 1}


def test_bounded_body(url):
    assert len(http_client.request(f"{url}/here", max_bytes=3).body) == 4   # one byte more: it was longer


def test_chunked_body_is_read_without_its_framing(url):
    assert http_client.get_json(f"{url}/chunked") == {"result": [1, 2, 3]}
    assert http_client.request(f"{url}/chunked", max_bytes=5).body == b'{"resu'   # one byte more, as above


def test_no_server_is_unreachable():
    with pytest.raises(http_client.Unreachable, match="no answer"):
        http_client.request(f"http://127.0.0.1:{free_port()}/", timeout_s=2)
