"""SSRF: which addresses a source may reach, end to end against loopback servers.

"Public" sites are played by a server on 127.0.0.2 that a test resolver names and declares
public; the private target is a server on 127.0.0.1. Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.netguard import ip_literal, is_public_address
from aggregator.refresh import refresh
from tests.helpers import EARLIER, LocalServer, by_name, fake_dns, state, titles_of, two_sources


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("169.254.169.254", "169.254.169.254"),
        ("0", "0.0.0.0"),
        ("[::1]", "::1"),
        ("[fd00::1]", "fd00::1"),
    ],
)
def test_ip_spellings(spelling: str, address: str) -> None:
    assert ip_literal(spelling) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "host", ["example.org", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "1.2.3.4 x", ""]
)
def test_names_are_not_ip_literals(host: str) -> None:
    assert ip_literal(host) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "::",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::"]
)
def test_public_addresses(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.fixture
def public_site() -> Iterator[LocalServer]:
    s = LocalServer("127.0.0.2")
    try:
        yield s
    finally:
        s.close()


def _public_source(tmp_path: Path, server: LocalServer, site: LocalServer, path: str) -> str:
    port = site.httpd.server_address[1]
    return f"http://feeds.example:{port}{path}"


@pytest.mark.parametrize(
    "target",
    ["127.0.0.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]"],
)
def test_redirect_from_a_public_name_to_loopback_is_refused(
    tmp_path: Path, server: LocalServer, public_site: LocalServer, target: str
) -> None:
    guard = fake_dns({"feeds.example": ["127.0.0.2"]}, public={"127.0.0.2"})
    server.serve("/secret", b"internal data", "text/plain")
    port = server.httpd.server_address[1]
    public_site.serve("/feed.xml", EARLIER, "application/rss+xml")
    config = two_sources(
        tmp_path, server, _public_source(tmp_path, server, public_site, "/feed.xml")
    )
    first = by_name(refresh(config, force=True, guard=guard))
    assert first["hostile"].outcome == "new" and first["steady"].outcome == "new"
    assert (
        public_site.hits("/feed.xml")[-1].headers["host"]
        == f"feeds.example:{public_site.httpd.server_address[1]}"
    )

    public_site.serve("/feed.xml", b"", status=302, Location=f"http://{target}:{port}/secret")
    results = by_name(refresh(config, force=True, guard=guard))
    assert results["hostile"].outcome == "error"
    assert "refused: redirect to" in (results["hostile"].error or "")
    assert "private or local address" in (results["hostile"].error or "")
    assert server.hits("/secret") == []  # never asked
    # The steady source lives on 127.0.0.1 itself: its own configured URL names it, so it may.
    assert results["steady"].outcome == "unchanged"
    assert titles_of(config, "hostile") == {"Earlier one", "Earlier two"}
    assert state(config, "hostile").error_streak == 1


def test_a_name_rebound_to_loopback_between_check_and_connect_is_refused(
    tmp_path: Path, server: LocalServer, public_site: LocalServer
) -> None:
    """The connection goes only to an address that passed the check, resolved once."""
    answers = iter([["127.0.0.2"], ["127.0.0.1"], ["127.0.0.1"], ["127.0.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    guard = fake_dns({}, public={"127.0.0.2"})
    object.__setattr__(guard, "resolver", rebinding)
    server.serve("/feed.xml", EARLIER, "application/rss+xml")  # the "internal" one
    port = server.httpd.server_address[1]
    config = two_sources(tmp_path, server, f"http://rebind.example:{port}/feed.xml")
    results = by_name(refresh(config, force=True, guard=guard))
    assert results["hostile"].outcome == "error"
    assert "private or local address" in (results["hostile"].error or "")
    assert server.hits("/feed.xml") == []
    assert results["steady"].outcome == "new"
    assert len(calls) >= 2  # checked before the request and again at connect


def test_configured_private_urls_work_unless_allow_private_is_off(
    tmp_path: Path, server: LocalServer, public_site: LocalServer
) -> None:
    server.serve("/feed.xml", EARLIER, "application/rss+xml")
    port = server.httpd.server_address[1]
    # A decimal spelling of 127.0.0.1 in the config names a private address: allowed.
    config = two_sources(tmp_path, server, f"http://2130706433:{port}/feed.xml")
    results = by_name(refresh(config, force=True))
    assert results["hostile"].outcome == "new" and results["steady"].outcome == "new"

    public_site.serve("/feed.xml", EARLIER, "application/rss+xml")
    guard = fake_dns({"feeds.example": ["127.0.0.2"]}, public={"127.0.0.2"}, allow_private=False)
    locked = two_sources(
        tmp_path,
        server,
        _public_source(tmp_path, server, public_site, "/feed.xml"),
        fetch="allow_private = false",
    )
    assert locked.fetch.allow_private is False
    hits = len(server.hits("/steady.xml"))
    results = by_name(refresh(locked, force=True, guard=guard))
    assert results["steady"].outcome == "error"
    assert "allow_private = false" in (results["steady"].error or "")
    assert len(server.hits("/steady.xml")) == hits
    assert results["hostile"].outcome in ("new", "unchanged")  # the public site still works
    assert titles_of(locked, "steady") == {"Steady one", "Steady two"}  # kept from before
