"""URL helpers shared by the stages: keep only safe http(s) links, clean them, compare them.

`safe_http_url` is the one link gate: every parser passes each link it finds through it, and
the normalize stage once more, so a link may be shown at all only if it says yes.
`clean_url` is the form kept and displayed; `canonical_url` is the form used to tell whether
two links point at the same post.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import idna  # IDNA 2008 / UTS #46; the stdlib codec only knows IDNA 2003

__all__ = [
    "FEED_REFERRER_VALUES",
    "TRACKING_PARAMS",
    "TRACKING_PREFIXES",
    "VALUE_TRACKING_PARAMS",
    "canonical_url",
    "clean_reference",
    "clean_url",
    "safe_http_url",
    "site_host",
    "url_forms",
]

# Query parameters that only say where a click came from; removed whatever their value.
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "yclid",
        "igshid",
        "spm",
        "scm",
        "ref_src",
        "ref_url",
        "_ga",
        "_gl",
        "mkt_tok",
        "oly_anon_id",
        "oly_enc_id",
        "vero_conv",
        "vero_id",
        "twclid",
        "ttclid",
        "rb_clickid",
        "__s",
    }
)
# Parameter-name prefixes removed whatever follows them (utm_source, utm_whatever, pk_kwd …).
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_", "hsa_")
# Parameters removed only when their value names a feed or a share channel (`ref=rss`).
VALUE_TRACKING_PARAMS: frozenset[str] = frozenset({"ref", "source", "src", "from", "via"})
FEED_REFERRER_VALUES: frozenset[str] = frozenset(
    {"rss", "rss2", "feed", "feeds", "atom", "twitter", "feedburner", "feedly"}
)

_HTTP_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Numeric references (with or without ";") and named ones closed by ";". A bare "&copy=1" in
# a query string is left alone: decoding it would corrupt a legitimate URL.
_ENTITY = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;)")
# Browsers ignore ASCII tab/newline anywhere in a URL; NUL and other controls, zero-width and
# bidi characters have been used to hide "javascript:" from filters, so they go too, and lone
# surrogates, which no encoding can carry.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)
_UNSAFE_CHARS = re.compile(r'[ "<>`]')
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
# A scheme as a careless reader might still take it: spaces around it, before the colon.
_LOOSE_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*)\s*:")
_PERCENT = re.compile(r"%[0-9a-fA-F]{2}")


def safe_http_url(
    href: str | None, base: str | None = None, *, same_document: bool = True
) -> str | None:
    """Resolve `href` against `base`; return an absolute http(s) URL, or None.

    Anything whose scheme is not http or https is refused, however it is spelled (entities,
    mixed case, embedded controls, leading spaces), and so is a link in which a scheme only
    shows once entities, invisible characters or percent-escapes are decoded, whether it is
    still relative (`javascript%3Ax`) or some earlier step already resolved it against
    `base` as if it were a path (`<base folder>/javascript&#58;x`, as feedparser does).
    Without a usable `base`, a scheme-relative `//host/x` is read as https and any other
    relative link is refused. `same_document=False` also refuses a bare `#fragment`, which
    points back into the base document itself.
    """
    if not href:
        return None
    cleaned = clean_reference(href)
    if not cleaned or (not same_document and cleaned.startswith("#")):
        return None
    match = _SCHEME.match(cleaned)
    if match and match.group(1).lower() not in _HTTP_SCHEMES:
        return None
    written = href.strip()
    if _hides_scheme(written):
        return None
    usable = _usable_base(base) if base else None
    if usable is not None:
        safe_base, folder = usable
        if written.startswith(folder) and _hides_scheme(written[len(folder) :]):
            return None  # resolved as if the reference were a path under the base's folder
        try:
            cleaned = urljoin(safe_base, cleaned)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            return None
    if cleaned.startswith("//"):
        cleaned = "https:" + cleaned  # scheme-relative without a base: assume https
    return _checked_absolute(_UNSAFE_CHARS.sub(_percent_encode, cleaned))


def clean_reference(href: str) -> str:
    """`href` as a browser reads it: entities decoded, invisible characters gone, stripped."""
    return _INVISIBLE.sub("", _decode_entities(href)).strip()


def _hides_scheme(reference: str) -> bool:
    """Whether a scheme other than http(s) shows only once `reference` is decoded.

    A scheme written plainly is not hidden: it is judged by the caller (refused, or, at the
    start of a path under the base, `Talk:Page`, kept).
    """
    if ":" not in reference and "&" not in reference and "%" not in reference:
        return False  # no colon, and nothing that could decode to one
    if _SCHEME.match(reference):
        return False
    decoded = unquote(clean_reference(reference))
    match = _LOOSE_SCHEME.match(decoded)
    return match is not None and match.group(1).lower() not in _HTTP_SCHEMES


@lru_cache(maxsize=64)
def _usable_base(base: str) -> tuple[str, str] | None:
    """The safe form of `base` and its folder (up to the last "/" of its path), or None."""
    safe_base = safe_http_url(base)
    if safe_base is None:
        return None
    parts = urlsplit(safe_base)
    return safe_base, f"{parts.scheme}://{parts.netloc}{parts.path.rpartition('/')[0]}/"


def clean_url(url: str) -> str:
    """The form of an http(s) URL that is stored and displayed.

    Lower-case scheme and IDNA host, no default port, no credentials, no tracking parameters,
    no empty query, no fragment (except "#!" and "#/" routes, which address content),
    upper-case percent escapes. Scheme and path are otherwise kept.
    """
    return _rebuild(url, identity=False)


def canonical_url(url: str) -> str:
    """The form of an http(s) URL used to tell whether two links are the same post.

    `clean_url`, and also: https for http (the same post is served on both), no trailing
    slash except on the root path.
    """
    return _rebuild(url, identity=True)


def site_host(url: str | None) -> str | None:
    """The host a site is known by, for telling whether a link is on it: lower-case ASCII,
    without a leading "www." and without the port; None for anything but an http(s) URL."""
    if not url:
        return None
    parts = _parse(url)
    if parts is None or parts.scheme not in _HTTP_SCHEMES or not parts.host:
        return None
    return parts.host.removeprefix("www.")


def url_forms(url: str) -> tuple[str, str]:
    """`(clean_url(url), canonical_url(url))`, parsing the URL once."""
    parts = _parse(url)
    if parts is None:
        return url.strip(), url.strip()
    return _compose(parts, identity=False), _compose(parts, identity=True)


def _rebuild(url: str, *, identity: bool) -> str:
    parts = _parse(url)
    return url.strip() if parts is None else _compose(parts, identity=identity)


class _Parts(NamedTuple):
    scheme: str  # lower case
    host: str  # lower-case ASCII, brackets around IPv6
    port: int | None
    path: str  # percent escapes upper-cased, "/" when empty
    query: str  # tracking parameters removed
    fragment: str  # kept only for "#!" and "#/" routes


def _parse(url: str) -> _Parts | None:
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return None
    return _Parts(
        scheme=parts.scheme.lower(),
        host=_canonical_host(host),
        port=port,
        path=_upper_escapes(parts.path) or "/",
        query=_strip_tracking(parts.query),
        fragment=parts.fragment if parts.fragment.startswith(("!", "/")) else "",
    )


def _compose(parts: _Parts, *, identity: bool) -> str:
    scheme, path = parts.scheme, parts.path
    if identity and scheme == "http":
        scheme = "https"
    # Once http became https, :80 and :443 both mean "the default".
    defaults = (80, 443) if identity else (_DEFAULT_PORTS.get(scheme),)
    netloc = parts.host
    if parts.port is not None and parts.port not in defaults:
        netloc = f"{netloc}:{parts.port}"
    if identity and len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return urlunsplit((scheme, netloc, path, parts.query, parts.fragment))


def _decode_entities(text: str) -> str:
    if "&" not in text:
        return text
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)


def _percent_encode(match: re.Match[str]) -> str:
    return f"%{ord(match.group(0)):02X}"


def _checked_absolute(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in _HTTP_SCHEMES or not host:
        return None
    return url


def _canonical_host(host: str) -> str:
    host = host.rstrip(".").lower()
    if ":" in host:  # IPv6 literal
        return f"[{host}]"
    if host.isascii():
        return host
    return _to_ascii(host)


def _to_ascii(host: str) -> str:
    try:
        return str(idna.encode(host, uts46=True).decode("ascii"))
    except (idna.IDNAError, UnicodeError, ValueError):
        pass
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host  # not a valid IDN; still comparable in its lower-case form


def _upper_escapes(text: str) -> str:
    if "%" not in text:
        return text
    return _PERCENT.sub(lambda m: m.group(0).upper(), text)


def _strip_tracking(query: str) -> str:
    if not query:
        return ""
    kept = [pair for pair in query.split("&") if pair and not _is_tracking(pair)]
    return "&".join(kept)


def _is_tracking(pair: str) -> bool:
    raw_name, _, raw_value = pair.partition("=")
    name = unquote(raw_name.replace("+", " ")).strip().lower()
    if name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES):
        return True
    if name in VALUE_TRACKING_PARAMS:
        value = unquote(raw_value.replace("+", " ")).strip().lower()
        return value in FEED_REFERRER_VALUES
    return False
