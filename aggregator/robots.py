"""robots.txt, read once per site per run, for the sources that honour it (page sources).

The cache does no I/O of its own: the caller passes a function that fetches a robots.txt URL
(with the same session, limits and address rules as the source). What an answer means follows
RFC 9309: a 2xx body is parsed; any 4xx means "no rules" (everything allowed); a 5xx, a network
error or a refused fetch means "unreachable", so everything on that site is disallowed for the
run. Rules are matched for the product token `aggregator`, else `*`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from aggregator.errors import FetchError
from aggregator.models import FetchResult

__all__ = ["AGENT_TOKEN", "RobotsCache"]

AGENT_TOKEN = "aggregator"
MAX_ROBOTS_BYTES = 512 * 1024  # RFC 9309: at least 500 KiB must be read


class RobotsCache:
    """robots.txt rules per origin (scheme, host, port), each fetched at most once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, RobotFileParser] = {}
        self._origin_locks: dict[str, threading.Lock] = {}

    def allowed(self, url: str, fetch_robots: Callable[[str], FetchResult]) -> bool:
        """Whether `url` may be fetched under its site's robots.txt.

        `fetch_robots` fetches a robots.txt URL (raising FetchError); it is called at most once
        per origin and run, by whichever source needs that origin first.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return True
        origin = f"{parts.scheme}://{parts.netloc.lower()}"
        with self._lock:
            origin_lock = self._origin_locks.setdefault(origin, threading.Lock())
        with origin_lock:  # one fetch per origin, the other sources wait for it
            rules = self._rules.get(origin)
            if rules is None:
                rules = self._load(origin, fetch_robots)
                self._rules[origin] = rules
        return rules.can_fetch(AGENT_TOKEN, url)

    @staticmethod
    def _load(origin: str, fetch_robots: Callable[[str], FetchResult]) -> RobotFileParser:
        rules = RobotFileParser(origin + "/robots.txt")
        try:
            result = fetch_robots(origin + "/robots.txt")
        except FetchError as exc:
            # No robots.txt (a 4xx) allows everything; one that cannot be read forbids all.
            allowed = exc.status is not None and 400 <= exc.status < 500
            rules.parse(["User-agent: *", "Allow: /" if allowed else "Disallow: /"])
            return rules
        text = result.body[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
        rules.parse(text.splitlines())
        return rules
