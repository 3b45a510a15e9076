"""The trainer client's errors are about the problem: not an r3 server, unreachable, timed out, not found.

Every test here runs against a stand-in, not ``r3 serve``: a small HTTP server of the standard library that answers as
another service would (JSON without r3's fields, an HTML 404 page), a socket that accepts and never answers, and a
port nobody listens on. The live client tests against a real server are in ``test_trainer_client.py``.
"""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Type

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import r3.trainer  # noqa: E402
from r3.trainer import (  # noqa: E402
    NotAnR3Server,
    ReplayClient,
    ReplayError,
    ReplayTimeout,
    RequestInfo,
    RequestNotFound,
    ServerUnreachable,
)

pytestmark = pytest.mark.timeout(60)

LONG_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head>\n<meta charset='utf-8'>\n<title>404 Not Found</title>\n</head>\n<body>\n"
    + "<p>The page you asked for is not here. Lorem ipsum dolor sit amet.</p>\n" * 200
    + "</body>\n</html>\n"
)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with ``status``, ``content_type`` and ``body`` (set per server by :func:`_serve`)."""

    status = 200
    content_type = "application/json"
    body = b""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(self.status)
        self.send_header("content-type", self.content_type)
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[int, str, str], str]]:
    """Starts stand-in HTTP servers that answer every GET alike; returns their URL; stops them at the end."""
    servers: List[http.server.ThreadingHTTPServer] = []

    def start(status: int, content_type: str, body: str) -> str:
        handler: Type[_Handler] = type("H", (_Handler,), {"status": status, "content_type": content_type, "body": body.encode()})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _calls(c: ReplayClient) -> List[Callable[[], object]]:
    """Every call of the client that talks to the server and returns data (``health`` answers False instead)."""
    info = RequestInfo("79c7700000000", 0, "req-1", 0, 12)
    return [
        c.manifest,
        c.list_requests,
        lambda: c.list_requests(after=info, limit=3),
        lambda: next(c.follow(read_timeout_s=2)),
        lambda: c.fetch(0),
        lambda: c.fetch("req-1", dtype="int64"),
        lambda: c.fetch(info, layers=(0, 2)),
        lambda: c.fetch(3, drop_last=True),
    ]


def _one_line(e: BaseException, limit: int = 400) -> str:
    text = str(e)
    assert "\n" not in text and len(text) <= limit, f"one short line, got {len(text)} characters: {text[:1000]!r}"
    return text


def test_the_error_classes_share_one_base_and_are_exported() -> None:
    for cls in (NotAnR3Server, ServerUnreachable, ReplayTimeout, RequestNotFound):
        assert issubclass(cls, ReplayError) and cls.__name__ in r3.trainer.__all__
    assert issubclass(ReplayTimeout, TimeoutError), "follow()'s TimeoutError is still caught as before"


def test_a_json_service_that_is_not_r3_is_named_so_never_a_key_error(serve: Callable[[int, str, str], str]) -> None:
    url = serve(200, "application/json", json.dumps({"service": "search", "version": "8.1"}) + "\n")
    c = ReplayClient(url, token="", timeout_s=10)
    assert c.health() is False
    for call in _calls(c):
        with pytest.raises(NotAnR3Server) as e:
            call()
        text = _one_line(e.value)
        assert "not an r3 server" in text and url in text, text


def test_an_html_404_page_is_cut_to_its_title(serve: Callable[[int, str, str], str]) -> None:
    url = serve(404, "text/html; charset=utf-8", LONG_PAGE)
    c = ReplayClient(url, token="", timeout_s=10)
    assert c.health() is False
    for call in _calls(c):
        with pytest.raises(NotAnR3Server) as e:
            call()
        text = _one_line(e.value)
        assert "HTTP 404" in text and "404 Not Found" in text and "<" not in text and "Lorem" not in text, text
        assert e.value.status == 404


def test_a_long_plain_body_is_cut(serve: Callable[[int, str, str], str]) -> None:
    url = serve(404, "text/plain", "no such thing; " * 500)
    c = ReplayClient(url, token="", timeout_s=10)
    with pytest.raises(RequestNotFound) as e:
        c.fetch("req-1")
    text = _one_line(e.value)
    assert text.startswith("request 'req-1': HTTP 404: no such thing;") and "..." in text, text


def test_a_server_that_never_answers_is_a_timeout_naming_the_limit() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: List[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # and never answer
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        c = ReplayClient(url, token="", timeout_s=0.5)
        for call in _calls(c):
            started = time.monotonic()
            with pytest.raises(ReplayTimeout) as e:
                call()
            assert time.monotonic() - started < 5
            text = _one_line(e.value)
            assert "no answer from " + url in text and "0.5 s" in text, text
    finally:
        stop.set()
        listener.close()
        for s in accepted:
            s.close()


def test_a_proxys_html_gateway_error_is_unreachable(serve: Callable[[int, str, str], str]) -> None:
    url = serve(502, "text/html", "<html><head><title>502 Bad Gateway</title></head><body>" + "nginx " * 500 + "</body></html>")
    c = ReplayClient(url, token="", timeout_s=10)
    for call in _calls(c):
        with pytest.raises(ServerUnreachable) as e:
            call()
        text = _one_line(e.value)
        assert "HTTP 502: an HTML page titled '502 Bad Gateway'" in text and "could not reach the server behind it" in text, text


def test_a_port_nobody_listens_on_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    url = f"http://127.0.0.1:{port}"
    c = ReplayClient(url, token="", timeout_s=5)
    assert c.health() is False
    for call in _calls(c):
        with pytest.raises(ServerUnreachable) as e:
            call()
        text = _one_line(e.value)
        assert "cannot reach " + url in text, text
