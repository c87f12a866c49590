"""What a URL is, for `aggregator add`: one fetch (two when a page advertises a feed) with the
same limits and address guard as a refresh, read but not stored.

    a feed                      -> kind "feed", its own title and site link
    a page advertising feeds    -> the first of them (read for its title), the others listed
    a page without one          -> kind "page", with the [sources.select] auto mode settles on
    anything else               -> kind "text"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import requests

from aggregator.config import Config
from aggregator.fetch import FetchLimits, fetch, new_session
from aggregator.models import SELECTOR_FIELDS, FetchResult, SourceKind
from aggregator.netguard import NetGuard

__all__ = ["Found", "detect_select", "discover"]

_WHO = "add"  # the name fetch errors carry: the source has none yet


@dataclass(frozen=True, slots=True)
class Found:
    """What `add` learned about a URL."""

    url: str  # what to configure: the URL given, or the feed its page advertises
    kind: SourceKind  # feed, page or text
    title: str | None = None  # the feed's (or page's) own title
    site: str | None = None  # the site's home page, as the feed states it
    others: tuple[str, ...] = ()  # further feeds the page advertises
    select: Mapping[str, str] | None = None  # [sources.select] detected for a page


def detect_select(page: FetchResult) -> Mapping[str, str] | None:
    """The `[sources.select]` keys that find the posts on a page without a feed, as auto mode
    settles on them (parse/autopage.py), or None when it finds no post list.

    `add` writes and prints what this returns as the new source's [sources.select] block, so
    the choice is pinned; without it `add` says to write the selectors by hand."""
    from aggregator.parse.page import page_rules

    found = page_rules(page.body, url=page.final_url, headers=page.headers)
    if found is None:
        return None
    return {key: value for key in SELECTOR_FIELDS if (value := getattr(found.rules, key))}


def discover(
    config: Config,
    url: str,
    *,
    kind: SourceKind = "auto",
    session: requests.Session | None = None,
    guard: NetGuard | None = None,
) -> Found:
    """Fetch `url` once and tell what it is. Raises the SourceError that stopped it."""
    from aggregator.parse.page import advertised_feeds
    from aggregator.parse.sniff import sniff

    own = session is None
    session = session or new_session()
    guard = guard or NetGuard(allow_private=config.fetch.allow_private)
    limits = FetchLimits(timeout=config.fetch.timeout, max_bytes=config.fetch.max_bytes)

    def get(target: str) -> FetchResult:
        return fetch(_WHO, target, session=session, limits=limits, conditional=False, guard=guard)

    try:
        first = get(url)
        found = kind if kind != "auto" else sniff(first.body, first.content_type)
        if found == "feed":
            return _feed(url, first, config)
        if found != "page":
            return Found(url, found)
        feeds = advertised_feeds(first.body, url=first.final_url, headers=first.headers)
        if feeds and kind == "auto":
            chosen = _feed(feeds[0], get(feeds[0]), config)
            return Found(chosen.url, "feed", chosen.title, chosen.site, tuple(feeds[1:]))
        return Found(url, "page", _page_title(first), select=detect_select(first))
    finally:
        if own:
            session.close()


def _feed(url: str, response: FetchResult, config: Config) -> Found:
    from aggregator.parse.feed import parse_feed

    doc = parse_feed(
        response.body,
        url=response.final_url,
        headers=response.headers,
        source=_WHO,
        max_items=1,
        time_limit=config.fetch.parse_timeout,
    )
    return Found(url, "feed", doc.title, doc.link)


def _page_title(page: FetchResult) -> str | None:
    from aggregator.parse.page import page_title

    return page_title(page.body, url=page.final_url, headers=page.headers)
