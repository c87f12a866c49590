"""The normalize stage: one RawItem as a parser found it becomes one Excerpt.

Text is made plain and clean, cut to the configured length, hashed for exact matching and
folded for the dedup stage; the link is made safe and clean, with an identity form for
matching; dates the source could not possibly mean are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import blake2b

from aggregator.ids import mint_id
from aggregator.models import Excerpt, ExcerptOptions, RawItem, Source
from aggregator.textutil import clean_text, cut, first_sentence, fold, html_to_text, is_truncated
from aggregator.urls import safe_http_url, site_host, url_forms

__all__ = [
    "EARLIEST_DATE",
    "FOLDED_TEXT_LIMIT",
    "UNTITLED",
    "mint_id",
    "normalize",
    "normalize_items",
]

EARLIEST_DATE = datetime(1995, 1, 1, tzinfo=UTC)  # no feed predates this; earlier is a bug
FUTURE_SLACK = timedelta(days=1)  # clock skew and time zone mistakes
FOLDED_TEXT_LIMIT = 4000  # characters of folded text kept for dedup
HTML_LIMIT = 256 * 1024  # characters of source HTML kept for full content; longer: none kept
UNTITLED = "(untitled)"
# Separators for hashed fields: clean_text removes both, so no field can contain them.
_FIELD_SEP = "\x1f"
_ITEM_SEP = "\x1e"
_SURROGATE = re.compile("[\ud800-\udfff]")


def normalize(
    item: RawItem,
    *,
    source: Source,
    now: datetime,
    options: ExcerptOptions,
    keep_html: bool = True,
    site: str | None = None,
) -> Excerpt:
    """Turn one parsed entry into the record the later stages work with. With `keep_html`
    (a feed's item: its HTML is the post's own), the item's HTML is kept for full content.
    `site` is the source's own home page as its document gives it (the feed's alternate
    link); without it, the source URL's host is the source's site."""
    now = _as_utc(now)
    placeholders = (options.code_placeholder, options.formula_placeholder)
    text = _plain_text(item.content, item.content_is_html, options)
    excerpt, cut_here = cut(text, options.max_chars, options.ellipsis)
    link, link_key = _link_forms(item.link)
    fingerprint = _hash(fold(excerpt, placeholders))
    key = _key(item.guid, link_key, fingerprint, source)
    shown = _Shown(
        title=_title(item.title, text, options),
        link=link,
        excerpt=excerpt,
        published=_trusted_date(item.published, now),
        updated=_trusted_date(item.updated, now),
        authors=_dedupe(item.authors, case_sensitive=True),
        categories=_dedupe(_with_source_category(item, source), case_sensitive=False),
    )
    return Excerpt(
        id=mint_id(source.name, key, shown.published, now),
        source=source.name,
        key=key,
        guid=_encodable(item.guid) if item.guid else item.guid,
        title=shown.title,
        link=link,
        published=shown.published,
        updated=shown.updated,
        first_seen=now,
        authors=shown.authors,
        categories=shown.categories,
        excerpt=excerpt,
        truncated=cut_here or is_truncated(text),
        fingerprint=fingerprint,
        content_hash=shown.content_hash(),
        position=item.position,
        text=_folded_text(text, placeholders),
        link_key=link_key,
        html=_html(item) if keep_html else None,
        site_host=site_host(site) or site_host(source.url),
    )


@dataclass(frozen=True, slots=True)
class _Shown:
    """The displayed fields of an excerpt: what content_hash covers."""

    title: str
    link: str | None
    excerpt: str
    published: datetime | None
    updated: datetime | None
    authors: tuple[str, ...]
    categories: tuple[str, ...]

    def content_hash(self) -> str:
        return _hash(
            _FIELD_SEP.join(
                (
                    self.title,
                    self.link or "",
                    self.excerpt,
                    self.published.isoformat() if self.published else "",
                    self.updated.isoformat() if self.updated else "",
                    _ITEM_SEP.join(self.authors),
                    _ITEM_SEP.join(self.categories),
                )
            )
        )


def normalize_items(
    items: Sequence[RawItem],
    *,
    source: Source,
    now: datetime,
    options: ExcerptOptions,
    keep_html: bool = True,
    site: str | None = None,
) -> tuple[Excerpt, ...]:
    """A document's items as excerpts, in document order, at most the source's max_entries.
    `site` is the document's own home link (see normalize)."""
    return tuple(
        normalize(item, source=source, now=now, options=options, keep_html=keep_html, site=site)
        for item in items[: source.max_entries]
    )


def _folded_text(text: str, placeholders: tuple[str, str]) -> str:
    """fold(text)[:FOLDED_TEXT_LIMIT], without folding all of a very long text."""
    head = text[: 2 * FOLDED_TEXT_LIMIT]
    if len(head) < len(text):
        folded = fold(head, placeholders)
        # Folding changes only a few characters around the cut; far enough past the limit,
        # the kept part is what folding the whole text would give.
        if len(folded) > FOLDED_TEXT_LIMIT + 32:
            return folded[:FOLDED_TEXT_LIMIT]
    return fold(text, placeholders)[:FOLDED_TEXT_LIMIT]


def _html(item: RawItem) -> str | None:
    """The item's HTML content as the source gave it, for `[output] content = "full"`; it is
    sanitized where it is emitted. HTML never is cut, so an over-long one is not kept."""
    html = item.content
    if not item.content_is_html or len(html) > HTML_LIMIT or not html.strip():
        return None
    try:
        html.encode("utf-8")  # a lone surrogate (possible from JSON) cannot be stored
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", html)
    return html


def _plain_text(content: str, is_html: bool, options: ExcerptOptions) -> str:
    if not is_html:
        return clean_text(content)
    return html_to_text(
        content,
        code_placeholder=options.code_placeholder,
        formula_placeholder=options.formula_placeholder,
    )


def _title(raw: str | None, text: str, options: ExcerptOptions) -> str:
    title = ""
    if raw:
        title = html_to_text(
            raw,
            code_placeholder=options.code_placeholder,
            formula_placeholder=options.formula_placeholder,
        )
    return title or first_sentence(text) or UNTITLED


def _link_forms(raw: str | None) -> tuple[str | None, str | None]:
    """The stored link and its identity form, or (None, None) when there is no safe link."""
    safe = safe_http_url(raw)
    return url_forms(safe) if safe else (None, None)


def _as_utc(moment: datetime) -> datetime:
    # The contract says aware UTC; a naive value is read as UTC rather than as local time.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _trusted_date(moment: datetime | None, now: datetime) -> datetime | None:
    if moment is None:
        return None
    moment = _as_utc(moment)
    if EARLIEST_DATE <= moment <= now + FUTURE_SLACK:
        return moment
    return None


def _with_source_category(item: RawItem, source: Source) -> tuple[str, ...]:
    if source.category:
        return (source.category, *item.categories)
    return item.categories


def _dedupe(values: Iterable[str], *, case_sensitive: bool) -> tuple[str, ...]:
    """Cleaned, non-empty values without repeats, first spelling kept, in order."""
    seen: set[str] = set()
    kept: list[str] = []
    for value in values:
        cleaned = clean_text(value)
        marker = cleaned if case_sensitive else cleaned.casefold()
        if cleaned and marker not in seen:
            seen.add(marker)
            kept.append(cleaned)
    return tuple(kept)


def _key(guid: str | None, link_key: str | None, fingerprint: str, source: Source) -> str:
    if guid and guid.strip():
        return "guid:" + _encodable(guid.strip())
    if link_key and not source.allow_duplicate_links:
        return "link:" + link_key
    return "text:" + fingerprint


def _encodable(text: str) -> str:
    # A lone surrogate (possible from JSON) cannot be stored as UTF-8: it becomes U+FFFD.
    if text.isprintable():
        return text
    return _SURROGATE.sub("\ufffd", text)


def _hash(text: str) -> str:
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
