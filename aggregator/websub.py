"""Tell a WebSub hub which feeds changed (W3C WebSub, the publisher's side).

After a refresh that changed a feed's bytes, the hub gets one `POST hub.mode=publish&hub.url=
<feed URL>` (form-encoded) per changed feed, from a background thread with a short timeout: a
slow or failing hub costs the refresh nothing and is logged as a warning. Nothing is sent when
no feed changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import requests

from aggregator import __version__

log = logging.getLogger("aggregator.websub")

TIMEOUT = 5.0  # seconds to connect, and to wait for the hub's answer

_pending: set[threading.Thread] = set()
_pending_lock = threading.Lock()


def publish(hub: str, urls: Sequence[str], *, timeout: float = TIMEOUT) -> threading.Thread | None:
    """Ping `hub` about each of `urls` in the background; the thread, or None if no URL."""
    if not urls:
        return None
    thread = threading.Thread(
        target=_ping_all, args=(hub, tuple(urls), timeout), name="websub", daemon=True
    )
    with _pending_lock:
        _pending.add(thread)
    thread.start()
    return thread


def wait(timeout: float = TIMEOUT * 2) -> None:
    """Let pings still under way finish (a command about to exit calls this), up to `timeout`."""
    with _pending_lock:
        threads = list(_pending)
    for thread in threads:
        thread.join(timeout)


def _ping_all(hub: str, urls: tuple[str, ...], timeout: float) -> None:
    try:
        with requests.Session() as session:
            session.headers["User-Agent"] = f"aggregator/{__version__} (WebSub publisher)"
            for url in urls:
                _ping(session, hub, url, timeout)
    finally:
        with _pending_lock:
            _pending.discard(threading.current_thread())


def _ping(session: requests.Session, hub: str, url: str, timeout: float) -> None:
    try:
        resp = session.post(
            hub,
            data={"hub.mode": "publish", "hub.url": url},
            timeout=timeout,
            allow_redirects=False,
        )
        resp.close()
    except requests.RequestException as exc:
        log.warning("WebSub hub %s: could not announce %s: %s", hub, url, _reason(exc))
        return
    if not 200 <= resp.status_code < 300:
        log.warning("WebSub hub %s: announcing %s answered HTTP %d", hub, url, resp.status_code)
    else:
        log.info("WebSub hub %s: announced %s", hub, url)


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    return type(exc).__name__
