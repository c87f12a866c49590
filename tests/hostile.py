"""Helpers for the hostile-server tests: feeds, a two-source config, reading back the store."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from aggregator.config import Config, load_config
from aggregator.models import RefreshReport, SourceResult, SourceState
from aggregator.netguard import IPAddress, NetGuard, is_public_address
from aggregator.refresh import refresh
from aggregator.store import open_store
from tests.conftest import LocalServer, load_snapshot, write_config


def rss(*items: tuple[str, str], channel: str = "", item_extra: str = "") -> bytes:
    """An RSS 2.0 feed of (guid, title) items, each with a link and a plausible date."""
    body = "".join(
        f"<item><guid isPermaLink='false'>{guid}</guid><title>{title}</title>"
        f"<link>https://site.example/{guid}</link>"
        f"<pubDate>Tue, 03 Nov 2026 09:00:00 +0000</pubDate>"
        f"<description>About {title}, in a few words.</description>{item_extra}</item>"
        for guid, title in items
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>T</title><link>https://site.example/</link>{channel}{body}</channel></rss>"
    ).encode()


EARLIER = rss(("e-1", "Earlier one"), ("e-2", "Earlier two"))
STEADY = rss(("s-1", "Steady one"), ("s-2", "Steady two"))


def two_sources(
    tmp_path: Path, server: LocalServer, hostile_url: str, *, fetch: str = "", extra: str = ""
) -> Config:
    """A config with a well-behaved `steady` source and the `hostile` one under test."""
    server.serve("/steady.xml", STEADY, "application/rss+xml")
    path = write_config(
        tmp_path,
        f"""
[feed]
title = "Merged"
link = "https://merged.test/"
[output]
dir = "out"
[store]
path = "state/agg.db"
[fetch]
timeout = 2
{fetch}
[[sources]]
name = "steady"
url = "{server.url("/steady.xml")}"
[[sources]]
name = "hostile"
url = "{hostile_url}"
{extra}
""",
    )
    return load_config(path)


def by_name(report: RefreshReport) -> dict[str, SourceResult]:
    return {r.source: r for r in report.results}


def state(config: Config, name: str) -> SourceState:
    with open_store(config) as store:
        st = store.get_state(name)
    assert st is not None
    return st


def snapshot(config: Config) -> dict[str, Any]:
    return load_snapshot(config.output_dir / "snapshot.json")


def titles_of(config: Config, source: str) -> set[str]:
    return {e["title"] for e in snapshot(config)["entries"] if e["source"] == source}


def refresh_all(config: Config, **kw: Any) -> dict[str, SourceResult]:
    return by_name(refresh(config, force=True, **kw))


def seeded(tmp_path: Path, server: LocalServer, path: str, **kw: Any) -> Config:
    """Serve EARLIER at `path`, refresh once, and return the config (both sources stored)."""
    server.serve(path, EARLIER, "application/rss+xml")
    config = two_sources(tmp_path, server, server.url(path), **kw)
    results = refresh_all(config)
    assert results["hostile"].outcome == "new" and results["steady"].outcome == "new"
    return config


def assert_survived(config: Config, results: dict[str, SourceResult]) -> None:
    """The earlier entries of `hostile` are still stored and shown; `steady` completed."""
    assert results["steady"].outcome in ("new", "unchanged"), results["steady"]
    assert titles_of(config, "hostile") >= {"Earlier one", "Earlier two"}
    assert titles_of(config, "steady") == {"Steady one", "Steady two"}


def fake_dns(
    names: dict[str, list[str]], public: Iterable[str] = (), *, allow_private: bool = True
) -> NetGuard:
    """A guard where `names` resolve as given and the `public` loopback addresses count as
    public, so that tests play "a public site" while connecting only to 127.0.0.x."""
    public_set = {str(p) for p in public}

    def resolver(host: str, port: int) -> list[str]:
        answers = names.get(host.lower())
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: unknown test name")
        return list(answers)

    def is_public(address: IPAddress) -> bool:
        return str(address) in public_set or is_public_address(address)

    return NetGuard(allow_private=allow_private, resolver=resolver, is_public=is_public)


def drip(handler: BaseHTTPRequestHandler) -> None:
    """Headers, then one byte at a time, until the client goes away."""
    import time

    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    try:
        for _ in range(100000):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.05)
    except OSError:
        pass


def endless(handler: BaseHTTPRequestHandler) -> None:
    """A body without a length that never ends (until the client goes away)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Connection", "close")
    handler.end_headers()
    chunk = b"<item><title>x</title></item>" * 2000
    try:
        handler.wfile.write(b"<?xml version='1.0'?><rss version='2.0'><channel>")
        while True:
            handler.wfile.write(chunk)
    except OSError:
        pass
    handler.close_connection = True


def aware(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
