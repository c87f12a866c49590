"""Which network addresses a fetch may reach, checked against the address actually connected to.

A source may reach a loopback, private, link-local, metadata or otherwise non-public address only
when its own configured URL names one (and `[fetch] allow_private` is on); a redirect from a
public host to such an address is refused. The check runs twice for every hop:

- before the request: the hop's host is resolved and every address is classified;
- at connect time: `GuardedAdapter` connects only to addresses that passed the check (resolved
  once, by the same resolver), so a name cannot resolve to a public address for the check and to
  a private one for the connection (DNS rebinding). TLS still uses the host name (SNI and
  certificate checks are unchanged), and the Host header is the URL's.

Host spellings that C's inet_aton accepts (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) are
read as the IPv4 address they denote, and IPv6 forms that embed an IPv4 address (mapped,
NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo) are classified by that address.

The resolver is a parameter (default: `socket.getaddrinfo`), so tests can declare a name as
resolving to a loopback address and mark that address as public, and still connect only to
127.0.0.x.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses the host resolves to, as text, in the order to try them.
Resolver = Callable[[str, int], list[str]]

__all__ = [
    "AddressRefused",
    "GuardedAdapter",
    "NetGuard",
    "ip_literal",
    "is_public_address",
    "system_resolver",
]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class AddressRefused(Exception):
    """A connection to a non-public address that the policy does not allow."""


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of `host`, from the operating system's resolver."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in out:
            out.append(address)
    return out


def ip_literal(host: str) -> IPAddress | None:
    """The address a host spells directly (any inet_aton IPv4 form, or IPv6), else None."""
    text = host.strip().strip("[]").rstrip(".")
    if not text:
        return None
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    return _inet_aton(text)


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """BSD inet_aton: 1 to 4 parts, each decimal, 0-octal or 0x-hex; the last fills the rest."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        lowered = part.lower()
        try:
            if lowered.startswith("0x"):
                value = int(lowered[2:], 16)
            elif len(lowered) > 1 and lowered.startswith("0"):
                value = int(lowered[1:], 8)
            elif lowered.isdigit():
                value = int(lowered, 10)
            else:
                return None
        except ValueError:
            return None
        numbers.append(value)
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for i, n in enumerate(head):
        value |= n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def is_public_address(address: IPAddress) -> bool:
    """Whether an address is on the public internet (not loopback, private, link-local, ...)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
        if address in _NAT64_LOCAL:
            return False
    return bool(
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    # IPv4-compatible ::a.b.c.d (deprecated, but some stacks still route it)
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address))
    return None


@dataclass(frozen=True, slots=True)
class NetGuard:
    """The address policy of a run: how names resolve and which addresses count as public."""

    allow_private: bool = True  # [fetch] allow_private: a configured URL may name one
    resolver: Resolver = system_resolver  # how host names resolve
    is_public: Callable[[IPAddress], bool] = field(default=is_public_address)

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of `host`; raises socket.gaierror when it does not resolve."""
        literal = ip_literal(host)
        if literal is not None:
            return [literal]
        out: list[IPAddress] = []
        for text in self.resolver(host.rstrip("."), port):
            address = ip_literal(text)
            if address is not None and address not in out:
                out.append(address)
        if not out:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
        return out

    def names_private(self, host: str, port: int) -> bool:
        """Whether `host` resolves to at least one non-public address (False if it fails)."""
        try:
            return any(not self.is_public(a) for a in self.resolve(host, port))
        except (OSError, UnicodeError):
            return False


@dataclass(frozen=True, slots=True)
class HopRule:
    """What one fetch may connect to: public addresses, plus those of one private host."""

    guard: NetGuard
    private_host: str | None = None  # the configured host, when it names a private address

    def permitted(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of `host` this fetch may connect to; raises AddressRefused if none."""
        addresses = self.guard.resolve(host, port)
        if self.private_host is not None and host.lower() == self.private_host:
            return addresses
        allowed = [a for a in addresses if self.guard.is_public(a)]
        if not allowed:
            raise AddressRefused(
                f"{host} is a private or local address ({addresses[0]}); only a source "
                "whose configured URL names such an address may reach one"
            )
        return allowed


_local = threading.local()


@contextmanager
def active_rule(rule: HopRule | None) -> Iterator[None]:
    """Make `rule` the one GuardedAdapter applies to connections opened by this thread."""
    previous = getattr(_local, "rule", None)
    _local.rule = rule
    try:
        yield
    finally:
        _local.rule = previous


def _current_rule() -> HopRule | None:
    return getattr(_local, "rule", None)


class _GuardedConnectionMixin:
    """Resolve with the active rule, connect only to a permitted address, verify the peer."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        rule = _current_rule()
        if rule is None:
            sock: socket.socket = super()._new_conn()  # type: ignore[misc]
            return sock
        try:
            addresses = rule.permitted(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        last: OSError | None = None
        for address in addresses:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for opt in self.socket_options or ():
                    sock.setsockopt(*opt)
                if self.timeout is not _DEFAULT_TIMEOUT:
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect((str(address), self.port))
                peer = ip_literal(str(sock.getpeername()[0]))
                if peer != address:
                    raise AddressRefused(f"connected to {peer}, not to the checked {address}")
                return sock
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError(
                    self,
                    f"Connection to {self.host} timed out. (connect timeout={self.timeout})",
                ) from exc
            except OSError as exc:
                sock.close()
                last = exc
            except BaseException:
                sock.close()
                raise
        raise NewConnectionError(
            self,  # type: ignore[arg-type]
            f"Failed to establish a new connection: {last}",
        )


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose connections obey the rule made active by `active_rule`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool,
            "https": _GuardedHTTPSPool,
        }
