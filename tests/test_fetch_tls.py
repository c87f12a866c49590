"""HTTPS sources: a local TLS server with a certificate made for the test."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aggregator.errors import FetchError
from aggregator.fetch import fetch, new_session
from tests.helpers import LocalServer

FEED = b"<rss version='2.0'><channel><title>t</title></channel></rss>"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, Path, dict[str, str]]]:
    """An HTTPS server on 127.0.0.1:0; `routes` maps a path to a redirect target or ''."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    routes: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            target = routes.get(self.path)
            if target:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(FEED)))
            self.end_headers()
            self.wfile.write(FEED)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd, cert, routes
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_https_source_is_fetched(
    tls_server: tuple[ThreadingHTTPServer, Path, dict[str, str]],
) -> None:
    httpd, cert, _ = tls_server
    session = new_session()
    session.verify = str(cert)
    url = f"https://127.0.0.1:{httpd.server_address[1]}/feed.xml"
    result = fetch("secure", url, session=session)
    assert result.status == 200 and result.body == FEED


def test_redirect_from_https_to_http_is_refused(
    tls_server: tuple[ThreadingHTTPServer, Path, dict[str, str]], server: LocalServer
) -> None:
    httpd, cert, routes = tls_server
    plain = server.serve("/feed.xml", FEED, "application/rss+xml")
    routes["/moved.xml"] = plain
    session = new_session()
    session.verify = str(cert)
    url = f"https://127.0.0.1:{httpd.server_address[1]}/moved.xml"
    with pytest.raises(FetchError, match="redirect from https to http refused"):
        fetch("secure", url, session=session)
    assert server.hits("/feed.xml") == []  # the downgraded URL was never requested
