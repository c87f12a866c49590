"""Read entries from an HTML page: `[sources.select]` CSS rules, completed or found by auto
mode (parse/autopage.py), or the page's advertised feed or JSON-LD articles.

Public functions:

- `parse_page(body, url=, headers=, source=, select=, max_items=, position_start=, ...)`.
- `find_next_pages(body, url=, headers=, select=)`: the pager links of one page.
- `page_rules(body, url=, headers=)`, `suggest_select(...)`: what auto mode settles on for a
  page, as rules or as the `[sources.select]` block to pin them.

The body is decoded by parse/decode.py, dates are read by parse/dates.py and every link goes
through `urls.safe_http_url`, as in the other parsers.

Pagination is driven by the caller, which fetches; this module never does I/O:

    doc = parse_page(body, url=url, headers=h, source=name, select=rules)
    items, visited = list(doc.items), {url}
    queue = list(find_next_pages(body, url=url, headers=h, select=rules))
    while queue and len(visited) < rules.max_pages:
        page_url = queue.pop(0)
        if page_url in visited:
            continue
        visited.add(page_url)
        body = fetch(page_url)
        more = parse_page(body, url=page_url, ..., position_start=len(items))
        items += more.items
        queue += find_next_pages(body, url=page_url, headers=h, select=rules)

`position` keeps counting across pages (0 is the top of page 1). A later page whose
entry selector matches nothing raises ParseError like the first; the caller may keep the
items it already has and turn that into a warning.

Links of entries are http(s) only, and a bare `#fragment` link is no entry's link: it points
back into the page. A local page (an absolute file path as `url`) has no web address of its
own, so its entry links resolve against its `<base href>` or, failing that, its
`<link rel="canonical">` / `og:url`; its pager links resolve to sibling local paths, so a
saved home page and its saved page 2 can be read together.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from aggregator.errors import ParseError
from aggregator.models import ParsedDocument, RawItem, SelectRules
from aggregator.parse.autopage import (
    AUTO_SELECTORS,
    Detection,
    auto_report,
    content_link,
    date_node,
    date_text,
    detect,
    is_generic_link_text,
    layout_changed,
    outermost,
    text_of,
)
from aggregator.parse.dates import parse_date
from aggregator.parse.decode import decode
from aggregator.urls import clean_reference, safe_http_url

__all__ = ["AUTO_SELECTORS", "find_next_pages", "page_rules", "parse_page", "suggest_select"]

NO_RULES_MESSAGE = (
    "HTML page has no feed, and auto mode found no post list on it; "
    "add [sources.select] with at least `entry`"
)

# --------------------------------------------------------------------------- links


def _is_web_url(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def _local_path(url: str) -> str:
    return unquote(urlsplit(url).path) if url.lower().startswith("file:") else url


def _link(href: str | None, base: str) -> str | None:
    """An entry's or pager's link: http(s), and not a bare `#fragment` back into the page."""
    return safe_http_url(href, base, same_document=False)


def _local_link(href: str | None, page_path: str) -> str | None:
    """A pager link of a local page: an http(s) URL, or a sibling absolute file path."""
    remote = _link(href, page_path)
    if remote is not None:
        return remote
    cleaned = clean_reference(href or "")
    if not cleaned or cleaned.startswith("#"):
        return None
    try:
        parts = urlsplit(urljoin(page_path, cleaned))
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None  # javascript:, data:, file:, mailto: ... never followed
    return unquote(parts.path)


# --------------------------------------------------------------------------- tree helpers


@dataclass(frozen=True, slots=True)
class _Page:
    tree: LexborHTMLParser
    url: str  # the page's own address (URL or local path)
    link_base: str  # what entry links resolve against


def _load(body: bytes, headers: Mapping[str, str], url: str) -> _Page:
    tree = LexborHTMLParser(decode(body, headers))
    return _Page(tree=tree, url=url, link_base=_link_base(tree, url))


def _link_base(tree: LexborHTMLParser, url: str) -> str:
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        base = _link(base_node.attributes.get("href"), url)
        if base is not None:
            return base
    if not _is_web_url(url):
        for selector, attr in (
            ('link[rel="canonical"]', "href"),
            ('meta[property="og:url"]', "content"),
        ):
            node = tree.css_first(selector)
            canonical = _link(node.attributes.get(attr), url) if node else None
            if canonical is not None:
                return canonical
    return url


def _css(
    node: LexborNode | LexborHTMLParser, selector: str, field: str, source: str
) -> list[LexborNode]:
    try:
        return node.css(selector)
    except SelectolaxError as exc:
        raise ParseError(
            source, f"invalid CSS selector {selector!r} in [sources.select] {field}"
        ) from exc


def _first(node: LexborNode, selector: str | None, field: str, source: str) -> LexborNode | None:
    if not selector:
        return None
    matches = _css(node, selector, field, source)
    return matches[0] if matches else None


def _document_title(tree: LexborHTMLParser) -> str | None:
    return text_of(tree.css_first("title")) or None


# --------------------------------------------------------------------------- parse_page


def parse_page(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    source: str,
    select: SelectRules | None,
    max_items: int = 500,
    position_start: int = 0,
    complete: bool = True,
    previous_entry: str | None = None,
    feed_first: bool = True,
) -> ParsedDocument:
    """Read one HTML page into a ParsedDocument (kind "page").

    With a complete `select`, every outermost `select.entry` match is one RawItem (see the
    module docstring for pagination and `position_start`). Rules left out are found by auto
    mode when `complete` (parse/autopage.py; the document's `auto_select` says what it chose).
    Without any rules, the page's advertised feed is returned as `feed_url` (no items); else
    the larger of the post list auto mode finds and the page's schema.org JSON-LD articles is
    read; a page with neither is a ParseError. Unless `feed_first`, the advertised feed is
    returned only when the page itself has no entries to read. `previous_entry` is the entry
    selector auto mode settled on at the last read: when the page's post list is no longer
    there, a warning (or the error) starting with `autopage.LAYOUT_CHANGED` says so.
    """
    if not body.strip():
        raise ParseError(source, "the page is empty")
    page = _load(body, headers, url)
    title = _document_title(page.tree)
    doc_link = safe_http_url(url)
    doc = ParsedDocument(kind="page", items=(), title=title, link=doc_link)
    feed_url = _advertised_feed(page) if select is None else None
    if feed_url is not None and feed_first:
        return replace(doc, feed_url=feed_url)
    jsonld = (
        [] if select is not None else _jsonld_items(page.tree, page.link_base)[: max(max_items, 0)]
    )
    # Scripts and styles are never entry text; drop them once for the whole page.
    page.tree.strip_tags(["script", "style", "noscript", "template"])
    found: Detection | None = None
    if complete and (select is None or not select.complete):
        found = detect(page.tree, url=page.url, link_base=page.link_base, given=select)
    if jsonld and (found is None or found.entries <= len(jsonld)) and not (select and select.entry):
        note = "entries read from schema.org JSON-LD; add [sources.select] to choose"
        return replace(doc, items=tuple(jsonld), warnings=(note,), auto_method="json-ld")
    rules = found.rules if found is not None else select
    changed = _layout_change(page, previous_entry, found, select)
    if rules is None or not rules.entry:
        if feed_url is not None:
            return replace(doc, feed_url=feed_url)
        raise ParseError(source, changed or NO_RULES_MESSAGE)
    items, warnings = _select_items(page, rules, source, max_items, position_start)
    if changed:
        warnings.insert(0, changed)
    doc = replace(doc, items=tuple(items), warnings=tuple(warnings))
    if found is None or not found.filled:
        return doc
    return replace(doc, auto_select=found.rules, auto_method=found.method)


def suggest_select(body: bytes, *, url: str, headers: Mapping[str, str]) -> str | None:
    """For front ends that add a page source: "selectors: auto (method)" and the
    `[sources.select]` block that pins what auto mode found on the page (as `check --fetch`
    prints it); None when it finds no post list."""
    found = page_rules(body, url=url, headers=headers)
    return None if found is None else auto_report(found.rules, found.method)


def _layout_change(
    page: _Page, previous: str | None, found: Detection | None, select: SelectRules | None
) -> str | None:
    """The message when auto mode's post list moved since `previous` was chosen, else None."""
    if not previous or (select is not None and select.entry):
        return None
    now = found.rules.entry if found is not None else None
    if now == previous:
        return None
    try:
        matches = len(outermost(page.tree.css(previous)))
    except SelectolaxError:
        matches = 0
    return layout_changed(previous, now, matches, found.entries if found is not None else 0)


def page_rules(body: bytes, *, url: str, headers: Mapping[str, str]) -> Detection | None:
    """The rules auto mode settles on for a page, or None when it finds no post list."""
    if not body.strip():
        return None
    page = _load(body, headers, url)
    page.tree.strip_tags(["script", "style", "noscript", "template"])
    return detect(page.tree, url=page.url, link_base=page.link_base, given=None)


def find_next_pages(
    body: bytes, *, url: str, headers: Mapping[str, str], select: SelectRules | None
) -> tuple[str, ...]:
    """Absolute URLs (or local paths, for a local page) of the `select.next` links.

    In page order, deduplicated; `#` links, non-http(s) schemes and the page itself are
    skipped. An invalid `next` selector yields nothing (parse_page reports bad selectors).
    """
    if select is None or not select.next or not body.strip():
        return ()
    page = _load(body, headers, url)
    try:
        nodes = page.tree.css(select.next)
    except SelectolaxError:
        return ()
    current = _without_fragment(url) if _is_web_url(url) else _local_path(url)
    found: dict[str, None] = {}
    for node in nodes:
        link = _pager_link(node, page)
        if link is not None and _without_fragment(link) != current:
            found.setdefault(_without_fragment(link), None)
    return tuple(found)


def _pager_link(node: LexborNode, page: _Page) -> str | None:
    href = _href_of(node)
    if _is_web_url(page.url):
        return _link(href, page.link_base)
    return _local_link(href, _local_path(page.url))


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]


def _href_of(node: LexborNode) -> str | None:
    """The node's own href, else the first descendant <a href>'s."""
    href = node.attributes.get("href")
    if href:
        return href
    anchor = node.css_first("a[href]")
    return anchor.attributes.get("href") if anchor is not None else None


# --------------------------------------------------------------------------- select mode


def _select_items(
    page: _Page, select: SelectRules, source: str, max_items: int, position_start: int
) -> tuple[list[RawItem], list[str]]:
    assert select.entry is not None
    blocks = outermost(_css(page.tree, select.entry, "entry", source))
    if not blocks:
        raise ParseError(
            source,
            f"selector {select.entry!r} ([sources.select] entry) matched nothing on the page; "
            "the page layout probably changed",
        )
    items: list[RawItem] = []
    hits: dict[str, int] = {}
    warnings: list[str] = []
    for block in blocks:
        if len(items) >= max_items:
            warnings.append(f"page has {len(blocks)} entries; only the first {max_items} read")
            break
        item = _block_item(block, select, page, source, hits)
        if item is not None:
            items.append(_with_position(item, position_start + len(items)))
    warnings.extend(_selector_warnings(select, hits, bool(items)))
    return items, warnings


def _with_position(item: RawItem, position: int) -> RawItem:
    return replace(item, position=position)


def _block_item(
    block: LexborNode, select: SelectRules, page: _Page, source: str, hits: dict[str, int]
) -> RawItem | None:
    title = _entry_title(block, select, page, source, hits)
    link = _entry_link(block, select, page, source, hits)
    published = _entry_date(block, select, source, hits)
    content = _entry_content(block, select, source, hits)
    categories = _entry_categories(block, select, source, hits)
    if not title and not link and not text_of(block):
        return None
    return RawItem(
        guid=None,
        title=title,
        link=link,
        content=content,
        content_is_html=True,
        published=published,
        categories=categories,
    )


def _hit(hits: dict[str, int], field: str, node: object) -> None:
    if node is not None:
        hits[field] = hits.get(field, 0) + 1


def _entry_title(
    block: LexborNode, select: SelectRules, page: _Page, source: str, hits: dict[str, int]
) -> str | None:
    node = _first(block, select.title, "title", source)
    _hit(hits, "title", node)
    if node is None:
        node = block.css_first("h1, h2, h3, h4, h5, h6")
    if node is None:
        # A link that names the post (not "read more", not a tag or category link).
        node = next(
            (
                a
                for a in _anchors(block)
                if content_link(a.attributes.get("href"), page.link_base, page.url) is not None
                and not is_generic_link_text(text_of(a))
            ),
            None,
        )
    # None: normalize makes the title from the first sentence of the excerpt.
    return text_of(node) or None


def _anchors(block: LexborNode) -> list[LexborNode]:
    own = [block] if block.tag == "a" and block.attributes.get("href") else []
    return own + block.css("a[href]")


def _entry_link(
    block: LexborNode, select: SelectRules, page: _Page, source: str, hits: dict[str, int]
) -> str | None:
    base = page.link_base
    if select.link:
        matches = _css(block, select.link, "link", source)
        _hit(hits, "link", matches[0] if matches else None)
        if matches:  # the rule found the link: never guess another one behind its back
            return next(filter(None, (_link(_href_of(n), base) for n in matches)), None)
    # Default: the heading's link, else the block's own href, else the first link to a post-like
    # page of the site (no tag, category or comments link), else the first safe <a href>.
    heading = block.css_first("h1, h2, h3, h4, h5, h6")
    candidates = [heading, _enclosing_link(heading, block)] if heading is not None else []
    anchors = block.css("a[href]")
    candidates += [block]
    candidates += [
        a for a in anchors if content_link(a.attributes.get("href"), base, page.url) is not None
    ]
    candidates += anchors
    for node in candidates:
        if node is None:
            continue
        link = _link(_href_of(node), base)
        if link is not None:
            return link
    return None


def _enclosing_link(node: LexborNode, block: LexborNode) -> LexborNode | None:
    """The <a href> around `node` (a heading inside a card-wide link), up to the block."""
    parent = node.parent
    while parent is not None and parent.mem_id != block.mem_id:
        if parent.tag == "a" and parent.attributes.get("href"):
            return parent
        parent = parent.parent
    return None


def _entry_date(
    block: LexborNode, select: SelectRules, source: str, hits: dict[str, int]
) -> datetime | None:
    node = _first(block, select.date, "date", source)
    _hit(hits, "date", node)
    for candidate in (node, date_node(block)):
        if candidate is None:
            continue
        attrs = candidate.attributes
        for value in (attrs.get("datetime"), attrs.get("content"), attrs.get("title")):
            published = parse_date(value)
            if published is not None:
                return published
        published = parse_date(text_of(candidate))
        if published is not None:
            return published
    return None if node is not None else parse_date(date_text(block))


def _entry_content(
    block: LexborNode, select: SelectRules, source: str, hits: dict[str, int]
) -> str:
    node = _first(block, select.excerpt, "excerpt", source)
    _hit(hits, "excerpt", node)
    return ((node or block).inner_html or "").strip()


def _entry_categories(
    block: LexborNode, select: SelectRules, source: str, hits: dict[str, int]
) -> tuple[str, ...]:
    if not select.category:
        return ()
    names = [text_of(node) for node in _css(block, select.category, "category", source)]
    if names:
        hits["category"] = hits.get("category", 0) + 1
    return tuple(dict.fromkeys(name for name in names if name))


def _selector_warnings(select: SelectRules, hits: dict[str, int], any_items: bool) -> list[str]:
    """A selector that matched in no entry at all usually means the layout changed."""
    if not any_items:
        return []
    warnings = []
    for field in ("title", "link", "date", "excerpt", "category"):
        selector = getattr(select, field)
        if selector and not hits.get(field):
            warnings.append(
                f"[sources.select] {field} selector {selector!r} matched in no entry on the page"
            )
    return warnings


# --------------------------------------------------------------------------- auto mode

_FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/feed+json"})


def page_title(body: bytes, *, url: str, headers: Mapping[str, str]) -> str | None:
    """An HTML page's own title."""
    return _document_title(_load(body, headers, url).tree)


def advertised_feeds(body: bytes, *, url: str, headers: Mapping[str, str]) -> list[str]:
    """Every feed an HTML page advertises, the one it would be read from first."""
    return _advertised_feeds(_load(body, headers, url))


def _advertised_feed(page: _Page) -> str | None:
    """The first advertised feed, preferring one that is not a comments feed."""
    return next(iter(_advertised_feeds(page)), None)


def _advertised_feeds(page: _Page) -> list[str]:
    feeds: list[str] = []
    for node in page.tree.css("link[href]"):
        attrs = node.attributes
        rel = (attrs.get("rel") or "").lower().split()
        kind = (attrs.get("type") or "").split(";")[0].strip().lower()
        if "alternate" not in rel or kind not in _FEED_TYPES:
            continue
        url = _link(attrs.get("href"), page.link_base)
        if url is not None:
            feeds.append(url)
    feeds = list(dict.fromkeys(feeds))
    main = [u for u in feeds if "comment" not in urlsplit(u).path.lower()]
    return main + [u for u in feeds if u not in main]


_ARTICLE_TYPES = frozenset(
    {
        "article",
        "blogposting",
        "newsarticle",
        "techarticle",
        "scholarlyarticle",
        "report",
        "socialmediaposting",
        "liveblogposting",
    }
)
_JSONLD_CONTAINERS = ("@graph", "itemListElement", "item", "mainEntity", "blogPost", "hasPart")


def _jsonld_items(tree: LexborHTMLParser, base: str) -> list[RawItem]:
    items: list[RawItem] = []
    seen: set[tuple[str | None, str | None]] = set()
    for script in tree.css("script[type]"):
        if (script.attributes.get("type") or "").strip().lower() != "application/ld+json":
            continue
        try:
            data = json.loads(script.text(deep=True) or "")
        except ValueError:
            continue  # broken JSON-LD is common; it is only a fallback
        for obj in _jsonld_objects(data, depth=0):
            item = _jsonld_item(obj, base, len(items))
            if item is not None and (item.title, item.link) not in seen:
                seen.add((item.title, item.link))
                items.append(item)
    return items


def _jsonld_objects(data: Any, depth: int) -> Iterator[dict[str, Any]]:
    if depth > 6:
        return
    if isinstance(data, list):
        for element in data:
            yield from _jsonld_objects(element, depth + 1)
    elif isinstance(data, dict):
        yield data
        for key in _JSONLD_CONTAINERS:
            if key in data:
                yield from _jsonld_objects(data[key], depth + 1)


def _jsonld_item(obj: dict[str, Any], base: str, position: int) -> RawItem | None:
    types = obj.get("@type")
    names = types if isinstance(types, list) else [types]
    if not any(isinstance(t, str) and t.lower() in _ARTICLE_TYPES for t in names):
        return None
    title = _jsonld_str(obj.get("headline")) or _jsonld_str(obj.get("name"))
    page_ref = obj.get("mainEntityOfPage")
    if isinstance(page_ref, dict):
        page_ref = page_ref.get("@id")
    link = _link(_jsonld_str(obj.get("url")) or _jsonld_str(page_ref), base)
    if not title and not link:
        return None
    content = next(
        (
            text
            for key in ("description", "abstract", "articleBody")
            if (text := _jsonld_str(obj.get(key)))
        ),
        "",
    )
    return RawItem(
        guid=None,
        title=title,
        link=link,
        content=content,
        content_is_html=False,
        published=parse_date(_jsonld_str(obj.get("datePublished"))),
        updated=parse_date(_jsonld_str(obj.get("dateModified"))),
        authors=_jsonld_names(obj.get("author")),
        categories=_jsonld_keywords(obj),
        position=position,
    )


def _jsonld_str(value: Any) -> str | None:
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, str):
        return " ".join(value.split()) or None
    return None


def _jsonld_names(value: Any) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    names = []
    for author in values:
        name = _jsonld_str(author.get("name")) if isinstance(author, dict) else _jsonld_str(author)
        if name:
            names.append(name)
    return tuple(dict.fromkeys(names))


def _jsonld_keywords(obj: dict[str, Any]) -> tuple[str, ...]:
    words: list[str] = []
    for key in ("articleSection", "keywords"):
        value = obj.get(key)
        if isinstance(value, str):
            words += value.split(",") if key == "keywords" else [value]
        elif isinstance(value, list):
            words += [v for v in value if isinstance(v, str)]
    return tuple(dict.fromkeys(w.strip() for w in words if w.strip()))
