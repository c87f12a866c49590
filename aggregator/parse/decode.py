"""Bytes to text for the page and text parsers, and the charset labels the feed parser reads.

`decode(body, headers)` takes the first of these that applies:

1. a byte order mark (UTF-8, UTF-16 LE or BE): the bytes say what they are;
2. the charset parameter of the HTTP Content-Type;
3. a declaration in the document: the XML declaration's encoding, else a `<meta charset>` or
   `<meta http-equiv="Content-Type">` in the first 2 KB;
4. detection: a body that is valid UTF-8 is UTF-8, else charset-normalizer's best guess;
5. UTF-8 with invalid bytes replaced.

This is the order of the WHATWG encoding sniffing algorithm for HTML (BOM, transport layer,
prescan) and of RFC 7303 for XML (BOM, charset parameter, XML declaration): what the server
says about the bytes outranks what the bytes say about themselves, short of a BOM.

A declared charset (2 and 3) is tried strictly, each in turn; when none decodes the body
cleanly, the first is used with invalid bytes replaced (declared but wrong in places is still
the best guess), and detection is not tried. Labels are read as browsers read them: ISO-8859-1
and ASCII as windows-1252, GB2312 and GBK as GB18030, Shift_JIS as cp932, EUC-KR as cp949.
An ISO-8859-1 (or ASCII, or windows-1252) label on a body that is valid non-ASCII UTF-8 means
UTF-8: it is what servers send when nobody configured a charset (HTTP/1.1's old default), and
valid non-ASCII UTF-8 is almost never real Latin-1. A UTF-16 label in an in-document
declaration means UTF-8, since a declaration readable as ASCII cannot be UTF-16.

Never raises on bad input: undecodable bytes become U+FFFD.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping

import charset_normalizer

from aggregator.parse.sniff import wide_codec

__all__ = ["charset_param", "decode", "repair_charrefs", "xml_encoding"]

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Labels that browsers (WHATWG Encoding) read as a wider codec; the narrow Python codec
# would turn the extra characters into replacement marks.
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "big5": "big5hkscs",
}

_PRESCAN_BYTES = 2048  # where a <meta> charset is looked for
_XML_DECLARATION_CHARS = 1024  # where an XML declaration is looked for
# A charset label, optionally quoted; every registered label fits the character class.
_LABEL = r"""["']?\s*([A-Za-z0-9._:\-]+)"""
_CHARSET = re.compile(r"charset\s*=\s*" + _LABEL, re.IGNORECASE)
_META_CHARSET = re.compile(r"<meta[^>]*?charset\s*=\s*" + _LABEL, re.IGNORECASE)
_XML_ENCODING = re.compile(r"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:\-]+)""")


def decode(body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """`body` as text, by the precedence in the module docstring."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(encoding, errors="replace")
    head = body[:_PRESCAN_BYTES].decode("latin-1")  # ASCII markup shows through unchanged
    labels = (
        (charset_param(_content_type(headers or {})), False),
        (xml_encoding(head), True),
        (_meta_charset(head), True),
    )
    declared = [codec for label, in_doc in labels if (codec := _codec(label, body, in_doc))]
    for encoding in declared:
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    if declared:
        return body.decode(declared[0], errors="replace")
    if _is_utf8(body):
        return body.decode("utf-8")
    best = charset_normalizer.from_bytes(body).best()
    if best is not None:
        return str(best)
    return body.decode("utf-8", errors="replace")


# A numeric character reference, in bytes of an ASCII-compatible encoding: `&#55357;`, `&#xD800;`.
_CHARREF = re.compile(rb"&#(?:[xX]([0-9A-Fa-f]+)|([0-9]+));")
_REPLACEMENT_REF = b"&#xFFFD;"


def repair_charrefs(body: bytes) -> tuple[bytes, int]:
    """`body` with every numeric character reference to no character made harmless, and how
    many were.

    XML allows references to legal characters only; one to a surrogate (`&#55357;`), beyond
    U+10FFFF (`&#x110000;`, `&#99999999999999999999;`) or to U+FFFE/U+FFFF makes a strict
    parser refuse the whole document and feedparser's lenient one raise. A surrogate pair
    written as two references (`&#55357;&#56832;`) becomes the character it spells; any other
    such reference becomes U+FFFD, and one to a control character that XML forbids is
    dropped. A UTF-16 or UTF-32 body is decoded, repaired and encoded again as it was.
    """
    wide = wide_codec(body)
    if wide is not None:
        try:
            text = body.decode(wide)
        except UnicodeDecodeError:
            return body, 0  # not what its opening says: left to the parser
        if "&#" not in text:
            return body, 0
        fixed, count = repair_charrefs(text.encode("utf-8"))
        return (fixed.decode("utf-8").encode(wide), count) if count else (body, 0)
    if b"&#" not in body:
        return body, 0
    repaired = 0
    low_at = -1  # where a low surrogate's reference starts that its pair has taken

    def replace(match: re.Match[bytes]) -> bytes:
        nonlocal repaired, low_at
        if match.start() == low_at:
            return b""
        code = _code_point(match)
        if code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD:
            return match.group(0)
        if 0x10000 <= code <= 0x10FFFF:
            return match.group(0)
        repaired += 1
        if 0xD800 <= code <= 0xDBFF:
            following = _CHARREF.match(body, match.end())
            low = _code_point(following) if following is not None else -1
            if 0xDC00 <= low <= 0xDFFF:
                low_at = match.end()
                return b"&#x%X;" % (0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
        return b"" if 0 <= code < 0x20 else _REPLACEMENT_REF

    return _CHARREF.sub(replace, body), repaired


def _code_point(match: re.Match[bytes]) -> int:
    hex_digits, decimal = match.group(1), match.group(2)
    digits = hex_digits if hex_digits is not None else decimal
    if len(digits.lstrip(b"0")) > 8:
        return -1  # far beyond any character; int() of it would be wasted work
    return int(digits, 16) if hex_digits is not None else int(digits)


def charset_param(content_type: str) -> str | None:
    """The charset label of a Content-Type value (`text/html; charset="gbk"` → `gbk`)."""
    match = _CHARSET.search(content_type)
    return match.group(1) if match else None


def xml_encoding(text: str) -> str | None:
    """The encoding label of an XML declaration in the first 1 KB of `text`, if any."""
    match = _XML_ENCODING.search(text[:_XML_DECLARATION_CHARS])
    return match.group(1) if match else None


def _meta_charset(head: str) -> str | None:
    match = _META_CHARSET.search(head)
    return match.group(1) if match else None


def _content_type(headers: Mapping[str, str]) -> str:
    value = headers.get("content-type")
    if value is None:  # the contract says lower-cased names; tolerate others
        value = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    return value or ""


def _codec(label: str | None, body: bytes, in_document: bool) -> str | None:
    """The Python codec for a declared charset label, or None when there is none or unknown."""
    if not label:
        return None
    name = label.strip().lower()
    if in_document and name.startswith("utf-16"):
        return "utf-8"
    name = _CHARSET_ALIASES.get(name, name)
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    if codec == "cp1252" and not body.isascii() and _is_utf8(body):
        return "utf-8"
    return codec


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
