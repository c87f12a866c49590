"""Fetch one URL or local file into a FetchResult: conditional GET, limits, redirects.

The caller passes the `requests.Session` in, so tests and the scheduler control it. Bodies are
streamed and capped on decoded bytes (a gzip bomb stops at the cap), and a total deadline stops
a server that drips one byte at a time. Redirects are followed here, hop by hop, so that every
hop can be checked: with a NetGuard, each hop's address is checked before the request and the
connection goes only to an address that passed (see netguard.py).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from aggregator import USER_AGENT
from aggregator.errors import FetchError
from aggregator.models import FetchResult, SourceState
from aggregator.netguard import (
    AddressRefused,
    GuardedAdapter,
    HopRule,
    NetGuard,
    active_rule,
    ip_literal,
)

MAX_REDIRECTS = 5
_PERMANENT = {301, 308}
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Limits for one fetch."""

    timeout: float = 20.0  # connect and read timeout, and the total deadline, in seconds
    max_bytes: int = 10 * 1024 * 1024  # decoded body bytes at most


# Called with (source name, URL about to be requested, whether it is the configured URL) before
# each hop; raises FetchError to refuse it. The address policy lives with the caller.
HopCheck = Callable[[str, str, bool], None]


def new_session(pool_size: int = 16) -> requests.Session:
    """A session with the product's User-Agent and no environment proxies or netrc.

    Its connections obey the address rule of the fetch that opens them (GuardedAdapter), and
    it keeps up to `pool_size` connections per host, for many hosts (requests' default of 10
    hosts would reopen connections on every refresh of more than 10 sites).
    """
    session = requests.Session()
    session.trust_env = False
    adapter = GuardedAdapter(pool_connections=512, pool_maxsize=max(pool_size, 1))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(
        {
            "User-Agent": USER_AGENT,
            "Accept": (
                "application/atom+xml, application/rss+xml, application/feed+json, "
                "application/xml;q=0.9, text/xml;q=0.9, text/html;q=0.8, */*;q=0.5"
            ),
            "Accept-Encoding": "gzip, deflate",
        }
    )
    return session


def fetch(
    source: str,
    url: str,
    *,
    session: requests.Session,
    state: SourceState | None = None,
    limits: FetchLimits = FetchLimits(),
    check_hop: HopCheck | None = None,
    conditional: bool = True,
    guard: NetGuard | None = None,
    origin: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> FetchResult:
    """Fetch `url` for the source named `source`. Raises FetchError on any failure.

    A local path is read from disk (status 200). For HTTP, the stored validators in `state` are
    sent back when `conditional` is true; a 304 comes back as a normal FetchResult.

    With a `guard`, only the host of `origin` (the source's configured URL; default `url`) may
    be a private address, and only if it names one and the guard allows private addresses.

    `extra_headers` (the source's own, credentials perhaps) go only to the origin of `origin`:
    a redirect to another scheme, host or port gets the request without them.
    """
    if not url.startswith(("http://", "https://")):
        return _read_file(source, url, limits)
    headers: dict[str, str] = {}
    if conditional and state is not None:
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
    rule = _hop_rule(source, guard, origin or url) if guard is not None else None
    deadline = time.monotonic() + limits.timeout
    current = url
    permanent: str | None = None
    all_permanent = True
    for hop in range(MAX_REDIRECTS + 1):
        if check_hop is not None:
            check_hop(source, current, hop == 0)
        if rule is not None:
            _check_address(source, rule, current, hop)
        sent = headers
        if extra_headers and _same_origin(current, origin or url):
            sent = {**extra_headers, **headers}
        with active_rule(rule):
            response = _request(source, session, current, sent, limits, deadline)
        with response:
            if rule is not None:
                _check_peer(source, rule, current, response)
            if response.status_code in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise FetchError(
                        source, f"HTTP {response.status_code} without a Location header"
                    )
                target = urljoin(current, location.strip())
                if urlsplit(target).scheme not in ("http", "https"):
                    raise FetchError(source, f"redirect to a non-HTTP URL refused: {target}")
                if urlsplit(current).scheme == "https" and urlsplit(target).scheme == "http":
                    raise FetchError(source, f"redirect from https to http refused: {target}")
                all_permanent = all_permanent and response.status_code in _PERMANENT
                permanent = target if all_permanent else None
                current = target
                continue
            if response.status_code >= 400:
                raise FetchError(
                    source,
                    f"HTTP {response.status_code} {response.reason or ''}".strip(),
                    status=response.status_code,
                    retry_after=response.headers.get("Retry-After"),
                )
            body = _read_body(source, response, limits, deadline)
            return FetchResult(
                url=url,
                final_url=current,
                status=response.status_code,
                headers={k.lower(): v for k, v in response.headers.items()},
                body=body,
                permanent_redirect=permanent,
            )
    raise FetchError(source, f"more than {MAX_REDIRECTS} redirects (last: {current})")


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme.lower(), pa.hostname, pa.port) == (pb.scheme.lower(), pb.hostname, pb.port)


def _hop_rule(source: str, guard: NetGuard, origin: str) -> HopRule:
    parts = urlsplit(origin)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not guard.names_private(host, port):
        return HopRule(guard)
    if not guard.allow_private:
        raise FetchError(
            source,
            f"refused: {host} is a private or local address ([fetch] allow_private = false)",
        )
    return HopRule(guard, private_host=host)


def _check_address(source: str, rule: HopRule, url: str, hop: int) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        rule.permitted(host, parts.port or (443 if parts.scheme == "https" else 80))
    except AddressRefused as exc:
        where = f"redirect to {url}" if hop else url
        raise FetchError(source, f"refused: {where}: {exc}") from None
    except (OSError, UnicodeError) as exc:
        raise FetchError(source, f"cannot connect: cannot resolve {host}: {exc}") from None


def _check_peer(source: str, rule: HopRule, url: str, response: requests.Response) -> None:
    """Check the address the response really came from (a pooled connection included)."""
    connection = getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if not isinstance(sock, socket.socket):
        return
    try:
        peer = str(sock.getpeername()[0])
    except OSError:
        return
    host = (urlsplit(url).hostname or "").lower()
    if rule.private_host is not None and host == rule.private_host:
        return
    address = ip_literal(peer)
    if address is not None and not rule.guard.is_public(address):
        raise FetchError(source, f"refused: {url} was answered from a private address {peer}")


def _request(
    source: str,
    session: requests.Session,
    url: str,
    headers: dict[str, str],
    limits: FetchLimits,
    deadline: float,
) -> requests.Response:
    remaining = max(0.1, deadline - time.monotonic())
    timeout = (min(limits.timeout, remaining), min(limits.timeout, remaining))
    try:
        return session.get(
            url, headers=headers, timeout=timeout, stream=True, allow_redirects=False
        )
    except AddressRefused as exc:
        raise FetchError(source, f"refused: {url}: {exc}") from None
    except requests.exceptions.ConnectTimeout:
        raise FetchError(source, f"connection timed out after {timeout[0]:.0f}s") from None
    except requests.exceptions.ReadTimeout:
        raise FetchError(source, f"no response within {timeout[1]:.0f}s") from None
    except requests.exceptions.SSLError as exc:
        raise FetchError(source, f"TLS error: {_short(exc)}") from None
    except requests.exceptions.ConnectionError as exc:
        raise FetchError(source, f"cannot connect: {_short(exc)}") from None
    except requests.exceptions.RequestException as exc:
        raise FetchError(source, f"request failed: {_short(exc)}") from None


def _read_body(
    source: str, response: requests.Response, limits: FetchLimits, deadline: float
) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if (
        declared.isdigit()
        and int(declared) > limits.max_bytes
        and "gzip" not in (response.headers.get("Content-Encoding", ""))
    ):
        raise FetchError(source, f"response too large: {declared} bytes (limit {limits.max_bytes})")
    chunks: list[bytes] = []
    size = 0
    raw = response.raw
    try:
        while True:
            # read1: whatever one receive brings (decoded, at most _CHUNK bytes), so that a
            # server dripping a byte at a time meets the deadline check below; read(n) would
            # wait for all n bytes, each byte resetting the read timeout.
            _set_read_timeout(response, max(0.05, min(limits.timeout, deadline - time.monotonic())))
            chunk = raw.read1(_CHUNK, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > limits.max_bytes:
                raise FetchError(
                    source, f"response larger than the limit of {limits.max_bytes} bytes"
                )
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise FetchError(source, f"response not complete within {limits.timeout:g}s")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
            # The receive was bounded by what was left of the deadline: if that ran out, the
            # body was too slow overall (a drip), not one silent pause.
            if time.monotonic() >= deadline - 0.05:
                raise FetchError(
                    source, f"response not complete within {limits.timeout:g}s"
                ) from None
            raise FetchError(source, f"response stalled for {limits.timeout:g}s") from None
        raise FetchError(source, f"reading the response failed: {_short(exc)}") from None
    return b"".join(chunks)


def _set_read_timeout(response: requests.Response, seconds: float) -> None:
    """Bound the next receive by what is left of the deadline, not a fresh read timeout."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.settimeout(seconds)


def _read_file(source: str, path: str, limits: FetchLimits) -> FetchResult:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            body = fh.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise FetchError(source, f"file not found: {p}") from None
    except IsADirectoryError:
        raise FetchError(source, f"is a folder, not a file: {p}") from None
    except OSError as exc:
        raise FetchError(source, f"cannot read {p}: {exc.strerror}") from None
    if len(body) > limits.max_bytes:
        raise FetchError(source, f"file larger than the limit of {limits.max_bytes} bytes")
    return FetchResult(url=path, final_url=p.resolve().as_uri(), status=200, body=body)


def _short(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the noise."""
    text = str(exc)
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.strip("()'\" ")[:200]
