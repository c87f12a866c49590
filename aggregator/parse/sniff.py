"""Decide what a fetched body is: a feed, an HTML page or plain text.

Only the first few kilobytes are looked at, so sniffing costs the same for any body size.
The helpers here also serve the feed parser's pre-parse security check: `peek_text` gives
an inspection-only view of raw bytes and `scan_prolog` walks the XML prolog up to the root
element. Neither is used to decode a document for parsing; that is the parser's job.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "SNIFF_BYTES",
    "Prolog",
    "media_type",
    "peek_text",
    "scan_prolog",
    "sniff",
    "wide_codec",
]

SNIFF_BYTES = 4096  # how much of the body sniff() looks at

FEED_MEDIA_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/feed+json",
        "application/x-rss+xml",
        "application/x-atom+xml",
    }
)
HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})
FEED_ROOTS = frozenset({"rss", "feed", "rdf"})  # local names, lower-cased (rdf:RDF → "rdf")

# Byte patterns of "<" in encodings that are not ASCII-compatible (XML spec, appendix F).
_NON_ASCII_STARTS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (b"\x00<", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x4c\x6f\xa7\x94", "cp037"),  # "<?xm" in EBCDIC
)
_SPACE = re.compile(r"\s*")
_JSON_FEED_VERSION = re.compile(r'"version"\s*:\s*"https?://jsonfeed\.org/version/')
_ELEMENT_NAME = re.compile(r"<([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)")
# Inside a DOCTYPE: literals, comments and PIs are skipped whole; brackets and ">" matter.
_DOCTYPE_TOKEN = re.compile(r"""["'\[\]>]|<!--|<\?""")
_HTML_DOCTYPE = re.compile(r"<!doctype\s+html", re.IGNORECASE)
_HTML_TAG = re.compile(
    r"<(?:html|head|body|div|meta|title|article|main|section|nav|header|footer|script|style)"
    r"[\s>/]",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Prolog:
    """What precedes the root element of an XML (or HTML) text."""

    root: str | None  # qualified name of the root element; None when none was reached
    doctype: str  # the DOCTYPE declaration verbatim ("" when none; cut short when unclosed)
    end: int  # where the scan stopped: the root's "<", or where it could go no further


def media_type(content_type: str) -> str:
    """`text/html; charset=x` → `text/html`."""
    return content_type.split(";", 1)[0].strip().lower()


def wide_codec(data: bytes) -> str | None:
    """The codec of a body in UTF-16 or UTF-32, told by its BOM or by how "<" is encoded; None
    for any other. Decoding with it and encoding the text back gives the same bytes."""
    for marker, codec in _NON_ASCII_STARTS:
        if data.startswith(marker):
            return codec if codec.startswith("utf-") else None
    return None


def peek_text(data: bytes) -> str:
    """An inspection-only text view of raw bytes, for looking at markup.

    UTF-16/32 and EBCDIC are recognised by their BOM or by how "<" is encoded; anything else
    is read as Latin-1, which maps every byte to one character, so the ASCII markup of any
    ASCII-compatible encoding shows through unchanged.
    """
    for marker, codec in _NON_ASCII_STARTS:
        if data.startswith(marker):
            return data.decode(codec, errors="replace").lstrip("\ufeff")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    return data.decode("latin-1")


def scan_prolog(text: str) -> Prolog:
    """Walk whitespace, PIs, comments and the DOCTYPE up to the root element.

    Linear in the length of `text`: every step jumps with str.find to a terminator, and an
    unterminated construct ends the scan instead of being retried.
    """
    n = len(text)
    pos = 0
    doctype = ""
    while True:
        pos = _skip_space(text, pos)
        if text.startswith("<?", pos):
            pos = _after(text, "?>", pos + 2)
        elif text.startswith("<!--", pos):
            pos = _after(text, "-->", pos + 4)
        elif text[pos : pos + 9].upper() == "<!DOCTYPE":
            end = _doctype_end(text, pos + 9)
            doctype = text[pos:end]
            pos = end
        else:
            match = _ELEMENT_NAME.match(text, pos)
            return Prolog(root=match.group(1) if match else None, doctype=doctype, end=pos)
        if pos >= n:
            return Prolog(root=None, doctype=doctype, end=n)


def sniff(body: bytes, content_type: str) -> Literal["feed", "page", "text"]:
    """Tell a feed (XML or JSON Feed) from an HTML page from anything else ("text").

    What the body shows wins over what the server says: feeds are often served as
    text/html, and HTML error pages as application/rss+xml. A body that opens with markup is
    never "text": only a source configured with kind = "text" reads one as a text capture.
    """
    head = peek_text(body[:SNIFF_BYTES]).lstrip()
    media = media_type(content_type)
    if head.startswith("{"):
        if media == "application/feed+json" or _JSON_FEED_VERSION.search(head):
            return "feed"
        return "text"  # JSON, but not a JSON Feed
    prolog = scan_prolog(head)
    root = (prolog.root or "").rpartition(":")[2].lower()
    if root in FEED_ROOTS:
        return "feed"
    if root == "html" or _HTML_DOCTYPE.match(prolog.doctype) or _HTML_TAG.search(head):
        return "page"
    if media in FEED_MEDIA_TYPES:
        return "feed"
    if media in HTML_MEDIA_TYPES:
        return "page"
    if head.startswith("<"):
        # Markup (`<?xml`, `<!--`, a root element), but no feed or page showed in it: a broken
        # feed, whatever the server calls it. The feed parser recovers what it can, or says
        # what the body is; its lines are never entries of a text capture.
        return "feed"
    return "text"


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


def _after(text: str, terminator: str, start: int) -> int:
    found = text.find(terminator, start)
    return len(text) if found < 0 else found + len(terminator)


def _doctype_end(text: str, pos: int) -> int:
    """Offset just past the DOCTYPE's closing ">" (or len(text) when it never closes)."""
    depth = 0  # inside the internal subset "[ ... ]"
    n = len(text)
    while pos < n:
        match = _DOCTYPE_TOKEN.search(text, pos)
        if match is None:
            return n
        token = match.group()
        pos = match.end()
        if token in ('"', "'"):
            pos = _after(text, token, pos)
        elif token == "<!--":
            pos = _after(text, "-->", pos)
        elif token == "<?":
            pos = _after(text, "?>", pos)
        elif token == "[":
            depth += 1
        elif token == "]":
            depth = max(depth - 1, 0)
        elif depth == 0:  # ">" closing the declaration
            return pos
    return n
