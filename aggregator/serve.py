"""Serve the output folder to feed readers and browsers: a small WSGI app run by waitress.

Only a fixed set of names is served, plus output feeds and archive pages whose paths match a
strict pattern (a lower-case stem, a page number), so nothing outside the output folder can be
reached. Each request opens its file once and reads from that
descriptor: the emitter replaces files by rename, so a request gets the old file or the new one,
never a mix. Bodies, strong ETags and gzip copies are cached by the file's identity (inode, size,
mtime), so a reader polling with If-None-Match costs one open, one fstat and a 304.
Feed requests never touch the database, except with a PostgreSQL store: crawl workers keep the
outputs in the database (`StoredOutputs`), and an output stored there is served in preference to
the folder's file. /healthz is computed from snapshot.json and the clock: 503 once no source
has fetched without error within three of its intervals.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

from aggregator import emit
from aggregator.errors import ServeError
from aggregator.models import Source
from aggregator.sourcestate import HEALTHY_INTERVALS, is_healthy

log = logging.getLogger("aggregator.serve")

DEFAULT_INTERVAL = Source(name="", url="").interval_seconds  # for a snapshot without intervals
StartResponse = Callable[[str, list[tuple[str, str]]], Any]

# URL path -> (file in the output folder, Content-Type)
ROUTES: dict[str, tuple[str, str]] = {
    "/": (emit.INDEX_FILE, "text/html; charset=utf-8"),
    "/index.html": (emit.INDEX_FILE, "text/html; charset=utf-8"),
    "/feed.atom": (emit.FEED_FILE, "application/atom+xml; charset=utf-8"),
    "/feed.json": (emit.JSON_FEED_FILE, "application/feed+json; charset=utf-8"),
    "/snapshot.json": (emit.SNAPSHOT_FILE, "application/json; charset=utf-8"),
}
# Every other output's feeds, and the archive pages: a name the config allows (see
# config.OUTPUT_NAME) and a page number; nothing in such a path can name another folder.
_FEED_PATH = re.compile(r"/([a-z0-9][a-z0-9_-]{0,63})\.(atom|json)")
_PAGE_PATH = re.compile(r"/archive/([a-z0-9][a-z0-9_-]{0,63})/([1-9][0-9]{0,8})\.(atom|json|html)")
_TYPES = {
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
# A sealed archive page never changes (archive.py): caches may keep it for a year.
SEALED_CACHE_CONTROL = "public, max-age=31536000, immutable"
HEALTH_PATH = "/healthz"
# The page only needs its inline stylesheet; nothing else may load or run.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
GZIP_MIN = 512  # smaller bodies are sent as they are


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How much of the server one client may hold (see `guarded_channel`)."""

    per_client: int = 16  # connections open at once from one address; more are closed at once
    request_seconds: float = 10.0  # a request's line and headers must arrive within this
    idle_seconds: int = 30  # a kept-alive connection with no request is closed after this
    total: int = 100  # connections open at once, all clients together


def guarded_channel(limits: ConnectionLimits) -> type[HTTPChannel]:
    """A waitress channel class that keeps a slow or greedy client from filling the server.

    waitress stops accepting once `connection_limit` connections are open, and closes only
    connections that stay silent for `channel_timeout`: a client that opens hundreds of
    connections and sends one header line into each every few seconds (slowloris) holds them
    all. Two bounds keep room for everyone else: a client address holds at most `per_client`
    connections (the next ones are closed on arrival), and a request must be complete within
    `request_seconds` of its first byte (a new connection's first request, within that time of
    connecting). Both are checked on the server's loop thread, which asks each channel whether
    it is readable at least once a second.
    """

    lock = threading.Lock()
    open_by_client: dict[str, int] = {}

    class GuardedChannel(HTTPChannel):  # type: ignore[misc]
        def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
            super().__init__(server, sock, addr, adj, map)
            self._client = str(addr[0]) if isinstance(addr, tuple) else str(addr)
            self._started = time.monotonic()  # when the request being read began to arrive
            self._spoke = False  # whether the client has sent anything on this connection
            self._counted = True
            with lock:
                n = open_by_client.get(self._client, 0) + 1
                open_by_client[self._client] = n
            if n > limits.per_client:
                self.will_close = True

        def received(self, data: bytes) -> bool:
            if self.request is None and self._spoke:
                self._started = time.monotonic()  # the next request on a kept-alive connection
            self._spoke = True
            result: bool = super().received(data)
            return result

        def readable(self) -> bool:
            waiting = self.request is not None or not self._spoke
            if (
                waiting
                and not self.will_close
                and time.monotonic() - self._started > limits.request_seconds
            ):
                self.will_close = True
            readable: bool = super().readable()
            return readable

        def del_channel(self, map: Any = None) -> None:
            if self._counted:
                self._counted = False
                with lock:
                    n = open_by_client.get(self._client, 1) - 1
                    if n > 0:
                        open_by_client[self._client] = n
                    else:
                        open_by_client.pop(self._client, None)
            super().del_channel(map)

    return GuardedChannel


@dataclass
class _Cached:
    """One version of one file, as read from disk."""

    ident: tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns
    body: bytes
    tag: str  # content hash, the strong ETag without quotes
    mtime: float
    gz: bytes | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class FileCache:
    """Reads files of the output folder, one open per request, cached by file identity."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._files: dict[str, _Cached] = {}

    def get(self, name: str) -> _Cached | None:
        try:
            fd = os.open(self.directory / name, os.O_RDONLY)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            with self._lock:
                hit = self._files.get(name)
            if hit is not None and hit.ident == ident:
                return hit
            with os.fdopen(os.dup(fd), "rb") as fh:
                body = fh.read()
        finally:
            os.close(fd)
        entry = _Cached(
            ident=ident,
            body=body,
            tag=hashlib.blake2b(body, digest_size=16).hexdigest(),
            mtime=st.st_mtime,
        )
        with self._lock:
            self._files[name] = entry
        return entry

    @staticmethod
    def gzipped(entry: _Cached) -> bytes:
        with entry.lock:
            if entry.gz is None:
                entry.gz = gzip.compress(entry.body, compresslevel=6, mtime=0)
            return entry.gz


class StoredOutputs:
    """Outputs kept in the database by the crawl workers' emit, served before the folder's.

    `read(name, known_tag)` returns the output's tag, change time and body, the body left out
    when the tag is `known_tag`: a request costs one short query, and a body is fetched once
    per change. When the database cannot answer, `read` raises ServeError and the last body
    read is served."""

    def __init__(self, read: Callable[[str, str | None], tuple[str, float, bytes | None] | None]):
        self._read = read
        self._lock = threading.Lock()
        self._files: dict[str, _Cached] = {}

    def get(self, name: str) -> _Cached | None:
        with self._lock:
            hit = self._files.get(name)
        try:
            got = self._read(name, hit.tag if hit is not None else None)
            if got is not None and got[2] is None and hit is None:
                got = self._read(name, None)
        except ServeError as exc:
            log.warning("%s", exc)
            return hit
        if got is None:
            return None
        tag, mtime, body = got
        if body is None:
            return hit
        entry = _Cached(ident=(0, 0, len(body), int(mtime * 1e9)), body=body, tag=tag, mtime=mtime)
        with self._lock:
            self._files[name] = entry
        return entry

    gzipped = staticmethod(FileCache.gzipped)


def _accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().lower()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def _etag_matches(header: str, tag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2); either encoding matches."""
    for candidate in header.split(","):
        c = candidate.strip()
        if c == "*":
            return True
        c = c.removeprefix("W/").strip('"')
        if c in (tag, f"{tag}-gzip"):
            return True
    return False


def _not_modified_since(header: str, mtime: float) -> bool:
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return False
    if since is None or since.tzinfo is None:
        return False
    return int(mtime) <= since.timestamp()


def _http_date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(int(ts), UTC), usegmt=True)


def health_document(snapshot: bytes | None, now: datetime | None = None) -> tuple[bool, bytes]:
    """The /healthz body from snapshot.json's bytes at `now` (default: the current time).

    Each source is healthy when it last fetched without error within HEALTHY_INTERVALS of its
    interval (sourcestate.is_healthy); the whole is ok while at least one source is healthy
    (or none is configured). No snapshot yet, or an unreadable one, is not ok.
    """
    now = now or datetime.now(UTC)
    if snapshot is None:
        doc: dict[str, Any] = {
            "ok": False,
            "last_refresh": None,
            "sources": [],
            "errors": [],
            "problem": "no snapshot.json yet: no refresh has written the outputs",
        }
    else:
        try:
            snap = json.loads(snapshot)
            sources = [_source_health(s, now) for s in snap["sources"]]
            healthy = sum(1 for s in sources if s["healthy"])
            doc = {
                "ok": not sources or healthy > 0,
                "last_refresh": snap["generated_at"],
                "healthy": healthy,
                "entries": len(snap["entries"]),
                "sources": sources,
                "errors": [s for s in sources if s["status"] in ("error", "gone")],
            }
            if not doc["ok"]:
                doc["problem"] = (
                    f"no source has fetched without error within {HEALTHY_INTERVALS} "
                    "of its intervals"
                )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            doc = {
                "ok": False,
                "last_refresh": None,
                "sources": [],
                "errors": [],
                "problem": f"snapshot.json unreadable: {exc}",
            }
    return bool(doc["ok"]), (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode()


def _source_health(source: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One source's part of /healthz, from its snapshot record."""
    last_success = source["last_success"]
    succeeded = datetime.fromisoformat(last_success) if last_success else None
    interval = int(source.get("interval_seconds") or DEFAULT_INTERVAL)
    return {
        "name": source["name"],
        "healthy": is_healthy(succeeded, interval, now),
        "status": source["status"],
        "error": source["error"],
        "warnings": source.get("warnings", []),
        "last_fetch": source["last_fetch"],
        "last_success": last_success,
        "interval_seconds": interval,
    }


class App:
    """The WSGI application serving one output folder."""

    def __init__(
        self, directory: Path, *, max_age: int = 60, stored: StoredOutputs | None = None
    ) -> None:
        self.files = FileCache(directory)
        self.stored = stored
        self.cache_control = f"public, max-age={max_age}"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        route = self._route(path)
        if path != HEALTH_PATH and route is None:
            return self._plain(start_response, "404 Not Found", b"not found\n", method)
        if method not in ("GET", "HEAD"):
            start_response(
                "405 Method Not Allowed",
                [("Allow", "GET, HEAD"), ("Content-Type", "text/plain"), ("Content-Length", "0")],
            )
            return [b""]
        if path == HEALTH_PATH or route is None:
            return self._health(start_response, method)
        name, content_type, cache_control = route
        entry = self._get(name)
        if entry is None:
            return self._plain(
                start_response,
                "404 Not Found",
                f"{name} is not written yet: run a refresh\n".encode(),
                method,
            )
        gz = len(entry.body) >= GZIP_MIN and _accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
        headers = [
            ("ETag", f'"{entry.tag}-gzip"' if gz else f'"{entry.tag}"'),
            ("Last-Modified", _http_date(entry.mtime)),
            ("Cache-Control", cache_control),
            ("Vary", "Accept-Encoding"),
            ("X-Content-Type-Options", "nosniff"),
        ]
        if content_type.startswith("text/html"):
            headers.append(("Content-Security-Policy", PAGE_CSP))
        inm = environ.get("HTTP_IF_NONE_MATCH")
        ims = environ.get("HTTP_IF_MODIFIED_SINCE")
        fresh = (
            _etag_matches(inm, entry.tag)
            if inm is not None
            else ims is not None and _not_modified_since(ims, entry.mtime)
        )
        if fresh:
            # No Content-Length (it would have to be the full body's), so waitress closes the
            # connection after a 304; a reader polling each minute opens a new one anyway.
            start_response("304 Not Modified", headers)
            return [b""]
        body = self.files.gzipped(entry) if gz else entry.body
        headers.append(("Content-Type", content_type))
        headers.append(("Content-Length", str(len(body))))
        if gz:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [b""] if method == "HEAD" else [body]

    def _route(self, path: str) -> tuple[str, str, str] | None:
        """The file, Content-Type and Cache-Control a path serves; None: nothing."""
        if path in ROUTES:
            return (*ROUTES[path], self.cache_control)
        if m := _FEED_PATH.fullmatch(path):
            return path[1:], _TYPES[m.group(2)], self.cache_control
        if m := _PAGE_PATH.fullmatch(path):
            output, page, ext = m.groups()
            # Sealed once a newer page exists (archive.py): the open page is the newest.
            newer = self.files.directory / "archive" / output / f"{int(page) + 1}.atom"
            cache = SEALED_CACHE_CONTROL if newer.exists() else self.cache_control
            return path[1:], _TYPES[ext], cache
        return None

    def _get(self, name: str) -> _Cached | None:
        """The output as stored in the database, if it is; else the output folder's file."""
        hit = self.stored.get(name) if self.stored is not None else None
        return hit if hit is not None else self.files.get(name)

    def _health(self, start_response: StartResponse, method: str) -> Iterable[bytes]:
        entry = self._get(emit.SNAPSHOT_FILE)
        # Health depends on the time as well as on the snapshot: computed for each request.
        ok, body = health_document(entry.body if entry is not None else None)
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-cache"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )
        return [b""] if method == "HEAD" else [body]

    @staticmethod
    def _plain(
        start_response: StartResponse, status: str, body: bytes, method: str
    ) -> Iterable[bytes]:
        start_response(
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )
        return [b""] if method == "HEAD" else [body]


class Server:
    """waitress serving `App` on a background thread; `stop()` ends it cleanly."""

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 8080,
        limits: ConnectionLimits = ConnectionLimits(),
        *,
        stored: StoredOutputs | None = None,
    ) -> None:
        self.app = App(directory, stored=stored)
        # Requests waiting for a worker thread are normal under load, not worth a log line each.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        try:
            self._server = create_server(
                self.app,
                host=host,
                port=port,
                threads=8,
                ident="aggregator",
                clear_untrusted_proxy_headers=True,
                connection_limit=limits.total,
                channel_timeout=limits.idle_seconds,
                cleanup_interval=min(limits.idle_seconds, 30),
            )
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ServeError(f"cannot listen on {host}:{port}: {reason}") from None
        channel = guarded_channel(limits)
        listeners = [
            s for s in getattr(self._server, "map", {}).values() if isinstance(s, BaseWSGIServer)
        ]
        for listener in listeners or [self._server]:
            listener.channel_class = channel
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.effective_host)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> Server:
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listening socket and every connection, then wait for the loop to end."""
        from waitress import wasyncore

        srv = self._server
        srv_map = srv._map
        if self._thread is not None and self._thread.is_alive():
            # The loop may end and close its wake-up pipe between the check and the pull:
            # then there is nothing left to wake.
            with contextlib.suppress(OSError):
                srv.trigger.pull_trigger(lambda: wasyncore.close_all(srv_map))
        if self._thread is not None:
            self._thread.join(timeout)
        srv.task_dispatcher.shutdown()
