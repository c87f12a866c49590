"""Shared test fixtures: a real HTTP server on 127.0.0.1 and config helpers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aggregator.store import Store

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SHARED = ROOT.parent / "shared"
SCHEMA = ROOT / "aggregator" / "schema" / "snapshot.schema.json"


@dataclass
class Response:
    """A canned response; `body` may be a callable taking the request handler."""

    body: bytes | Callable[[BaseHTTPRequestHandler], bytes | None] = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    """What the client sent, for assertions on it."""

    method: str
    path: str
    headers: dict[str, str]


class _QuietServer(ThreadingHTTPServer):
    """A client closing its keep-alive connection is normal, not a traceback on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalServer:
    """A threaded HTTP server on 127.0.0.1:0 (or another loopback address) with routes."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Response] = {}
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(
                    Request("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                route = server.routes.get(self.path.split("?")[0]) or server.routes.get(self.path)
                if route is None:
                    route = Response(b"not found", 404, {"Content-Type": "text/plain"})
                body = route.body(self) if callable(route.body) else route.body
                if body is None:  # the callable wrote the response itself
                    return
                self.send_response(route.status)
                for k, v in route.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if route.status != 304:
                    self.wfile.write(body)

        self.httpd = _QuietServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve(
        self,
        path: str,
        body: bytes | str,
        content_type: str = "application/xml",
        status: int = 200,
        **headers: str,
    ) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        hdrs = {
            "Content-Type": content_type,
            **{k.replace("_", "-"): v for k, v in headers.items()},
        }
        self.routes[path] = Response(data, status, hdrs)
        return self.url(path)

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path.split("?")[0] == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    s = LocalServer()
    try:
        yield s
    finally:
        s.close()


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


def load_snapshot(path: Path) -> dict[str, Any]:
    import jsonschema

    doc = json.loads(path.read_text(encoding="utf-8"))
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(doc)
    return doc


# Every Store implementation the contract suite (tests/test_store_contract.py) and the dedup
# tests run against, by name.
STORES = ("sqlite",)


def open_test_store(kind: str, tmp_path: Path, name: str = "store.db") -> Store:
    """The store of the given implementation kept in `tmp_path` (new and empty at first)."""
    if kind == "sqlite":
        from aggregator.store.sqlite import SQLiteStore

        return SQLiteStore(tmp_path / name)
    raise ValueError(f"unknown store kind {kind!r}")


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A new, empty store, once per implementation."""
    with open_test_store(request.param, tmp_path) as opened:
        yield opened
