"""A synthetic but realistic feed workload, and a local server that serves it.

The workload (`generate`) lives in tests/helpers.py, where the tests use it too: N feeds x M
entries, alternating RSS 2.0 and Atom 1.0, with HTML summaries of 2-4 KB in two languages and
one entry in ten a repeat of the previous feed's; with `newer=1`, each feed has published one
more post since.

The server answers 304 to If-None-Match / If-Modified-Since while `mode` is "conditional", and
ignores validators (sending the same bytes with status 200) while it is "ignore".
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["LAST_MODIFIED", "FeedServer", "generate", "serving"]

LAST_MODIFIED = "Mon, 02 Nov 2026 10:00:00 GMT"


def generate(feeds: int, entries: int, seed: int = 6, newer: int = 0) -> dict[str, bytes]:
    """Path -> body for every feed of the workload (tests/helpers.py's `generate`).

    Imported on first call: a measured child process that imports this module without calling
    it (vs_reader.py's) must not load the test helpers, and the aggregator with them.
    """
    from tests.helpers import generate as build

    return build(feeds, entries, seed=seed, newer=newer)


class FeedServer:
    """A threaded HTTP/1.1 server on 127.0.0.1:0 for the generated bodies."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.publish(bodies)
        self.mode = "conditional"
        self.counts = {"200": 0, "304": 0}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                body = server.bodies.get(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = server.etags[path]
                fresh = self.headers.get("If-None-Match") == etag or (
                    self.headers.get("If-Modified-Since") == LAST_MODIFIED
                )
                if server.mode == "conditional" and fresh:
                    server.counts["304"] += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                server.counts["200"] += 1
                self.send_response(200)
                kind = "application/rss+xml" if path.endswith(".xml") else "application/atom+xml"
                self.send_header("Content-Type", kind + "; charset=utf-8")
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", LAST_MODIFIED)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def publish(self, bodies: dict[str, bytes]) -> None:
        """Serve these bodies from now on (the same paths)."""
        self.bodies = bodies
        self.etags = {p: '"' + hashlib.md5(b).hexdigest() + '"' for p, b in bodies.items()}

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    def urls(self) -> list[str]:
        return [self.base + p for p in self.bodies]


@contextmanager
def serving(bodies: dict[str, bytes]) -> Iterator[FeedServer]:
    server = FeedServer(bodies)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
