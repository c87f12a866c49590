"""Read a plain text capture of a blog's "LATEST UPDATES" list.

The shape: a few header lines, then one post excerpt per line. An excerpt may be
preceded by a short category line (`Python`) and/or a date line (`2026-01-11`), which
belong to the next excerpt only; a pager line (`1 2`) may close the list.

Every line that is not blank, a header, a pager, a date or such a label is one entry.
A label or date with no excerpt after it (end of the capture, or a pager next) is dropped.
A date line is one written in any shape parse/dates.py reads (`2026-01-11`, `2026年1月11日`,
`Jan 11, 2026`, ...), even an impossible one (`2026-02-30`), which then dates nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from aggregator.errors import ParseError
from aggregator.models import ParsedDocument, RawItem
from aggregator.parse.dates import is_date, parse_date
from aggregator.parse.decode import decode
from aggregator.urls import safe_http_url

__all__ = ["classify_line", "parse_text"]

NO_ENTRIES_MESSAGE = "no entries found in the text capture"

# Only \r\n, \r and \n end a line: str.splitlines would also split on U+2028, \x0c...
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_EDGE_CHARS = " \t\u3000\u00a0\ufeff\u200b"  # whitespace and invisible marks around lines

# fmt: off
_PAGER_WORDS = frozenset({
    "next", "prev", "previous", "older", "newer", "first", "last",
    "...", "…", "»", "«", "›", "‹", ">", "<", ">>", "<<",
    "下一页", "上一页", "首页", "尾页", "末页",
})
# fmt: on
_MAX_LABEL_CHARS = 24
# Sentence punctuation: CJK marks anywhere, ASCII ones when they end a clause
# (so `Node.js` or `C#` can still be labels while `Hello.` cannot).
_SENTENCE_PUNCT = re.compile(r"[。！？，；、：]|[.!?,;:](?:\s|$)")
_NUMBERED = re.compile(r"^\d+\s*[.、)）]")  # `1.深度学习…` is a numbered title, not a tag


@dataclass(frozen=True, slots=True)
class _Pending:
    """Labels and a date waiting for the excerpt they belong to."""

    labels: tuple[str, ...] = ()
    published: datetime | None = None


def classify_line(line: str, headers: frozenset[str]) -> str:
    """One of "blank", "header", "pager", "date", "label" or "entry" (line stripped).

    "label" only means the line could be a category; the parser decides from what follows.
    """
    if not line:
        return "blank"
    if line.casefold() in headers:
        return "header"
    if _is_pager(line):
        return "pager"
    if is_date(line):
        return "date"
    if (
        len(line) <= _MAX_LABEL_CHARS
        and not _SENTENCE_PUNCT.search(line)
        and not _NUMBERED.match(line)
    ):
        return "label"
    return "entry"


def _is_pager(line: str) -> bool:
    # `1 2 3`, `1 2 ... 9 Next`, `« Prev 3 4`, `下一页`: page numbers and pager words only.
    return all(token.isdigit() or token in _PAGER_WORDS for token in line.casefold().split())


def parse_text(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    source: str,
    header_lines: tuple[str, ...],
    max_items: int = 500,
) -> ParsedDocument:
    """Read a text capture into a ParsedDocument (kind "text"), one RawItem per excerpt.

    Items carry the line as plain text content; title, link and guid are None (the
    normalizer derives a title). Raises ParseError when no excerpt is found.
    """
    text = decode(body, headers)
    if "\x00" in text:
        raise ParseError(source, "the body is binary, not a text capture")
    headers_folded = frozenset(h.strip().casefold() for h in header_lines if h.strip())
    lines = [line.strip(_EDGE_CHARS) for line in _LINE_BREAK.split(text)]
    kinds = [classify_line(line, headers_folded) for line in lines]
    items: list[RawItem] = []
    warnings: list[str] = []
    entry_follows = _entry_follows(kinds)
    pending = _Pending()
    for index, (line, kind) in enumerate(zip(lines, kinds, strict=True)):
        if kind in ("blank", "header"):
            continue
        if kind == "pager":
            pending = _Pending()  # a label before a pager belongs to nothing
        elif kind == "date":
            pending = _Pending(pending.labels, parse_date(line))
        elif kind == "label" and entry_follows[index]:
            pending = _Pending((*pending.labels, line), pending.published)
        elif kind == "label":
            pending = _Pending()  # nothing follows it: drop it (and anything before it)
        else:
            if len(items) >= max_items:
                warnings.append(f"capture has more than {max_items} entries; the rest skipped")
                break
            items.append(_item(line, pending, len(items)))
            pending = _Pending()
    if not items:
        raise ParseError(source, NO_ENTRIES_MESSAGE)
    return ParsedDocument(
        kind="text",
        items=tuple(items),
        link=safe_http_url(url),
        warnings=tuple(warnings),
    )


def _entry_follows(kinds: list[str]) -> list[bool]:
    """For each line: does an excerpt come next, past blanks, headers, labels and dates?

    One backward pass, so a long run of short lines stays linear.
    """
    follows = [False] * len(kinds)
    upcoming = False
    for index in range(len(kinds) - 1, -1, -1):
        follows[index] = upcoming
        if kinds[index] == "entry":
            upcoming = True
        elif kinds[index] == "pager":
            upcoming = False
    return follows


def _item(line: str, pending: _Pending, position: int) -> RawItem:
    return RawItem(
        guid=None,
        title=None,
        link=None,
        content=line,
        content_is_html=False,
        published=pending.published,
        categories=tuple(dict.fromkeys(pending.labels)),
        position=position,
    )
