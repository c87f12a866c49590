"""Find the post list of an HTML page by itself: the selectors a person would have written.

`detect(tree, url=, link_base=, given=)` settles on `[sources.select]` rules for a page that has
none, or completes the rules it was given (a rule in the config always wins). The result is
plain CSS selectors, read by the same code as hand-written ones, so the choice can be printed
(`select_block`) and pasted into the config to pin it.

The search, in order:

1. Structured markup: microdata (`itemscope` with a schema.org BlogPosting/Article type) and
   h-entry microformats, both of which name their fields in the markup and so become
   selectors directly. (schema.org JSON-LD, which has no place in the page's tree, is read by
   page.py itself and wins when it lists at least as many posts as the structure does.)
2. The structure: every group of sibling elements of one tag (and, for each class they share,
   of that class) is a candidate post list. A member counts when it links to one to three
   distinct pages of the same site (not a tag, category, author, archive or pager page, not the
   page itself) through a prominent link (in or around a heading, most of its text, or a
   "read more" link) and carries some text; members that do not count are held against the
   group. Groups inside navigation, headers, footers, asides or elements whose class or id says
   menu, sidebar, widget, popular, related, comments, pagination ... are never chosen. The
   group with the highest score (items weighted by text, heading and date) wins; ties go to the
   earlier group in the page, so the same page always gives the same choice.

Within the chosen items the fields are found the same way (the heading, the link in it, a
`<time>` or an element whose text is a date, a summary-like element, category or tag links),
and on the page the pager: `rel="next"`, a link whose class or text says next or older, or a
container of page-numbered links.

Pure functions over a parsed tree; no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from aggregator.models import SELECTOR_FIELDS as FIELDS
from aggregator.models import SelectRules
from aggregator.parse.dates import is_date
from aggregator.urls import safe_http_url

__all__ = [
    "AUTO_SELECTORS",
    "FIELDS",
    "LAYOUT_CHANGED",
    "Detection",
    "auto_report",
    "content_link",
    "date_node",
    "date_text",
    "detect",
    "is_generic_link_text",
    "layout_changed",
    "outermost",
    "select_block",
    "text_of",
]

AUTO_SELECTORS = "selectors: auto"  # how a source whose selectors were detected is reported
# The start of the warning (or error) of a page whose post list moved since the last read.
LAYOUT_CHANGED = "auto selectors: the page layout changed"

Method = Literal["microdata", "h-entry", "structure", "given"]


@dataclass(frozen=True, slots=True)
class Detection:
    """The rules settled on for one page and how they were found."""

    rules: SelectRules  # complete as far as the page allows; the config's own rules kept
    method: Method  # where the entry selector came from ("given": the config's)
    entries: int  # items the entry selector finds on the page
    filled: tuple[str, ...]  # the fields that the detector supplied


# --------------------------------------------------------------------------- shared helpers


def text_of(node: LexborNode | None) -> str:
    """The node's text, whitespace collapsed."""
    if node is None:
        return ""
    return " ".join((node.text(deep=True) or "").split())


def outermost(nodes: Sequence[LexborNode]) -> list[LexborNode]:
    """Drop matches nested in an earlier match (`.post` inside `.post` is one entry)."""
    seen: set[int] = set()
    kept = []
    for node in nodes:
        parent, nested = node.parent, False
        while parent is not None:
            if parent.mem_id in seen:
                nested = True
                break
            parent = parent.parent
        seen.add(node.mem_id)
        if not nested:
            kept.append(node)
    return kept


_GENERIC = re.compile(
    r"^(?:(?:read|continue|view|see|keep)(?:\s+the)?\s+(?:more|full|reading|post|article|story|"
    r"rest)\b.*|more(?:\s+(?:posts?|articles?|stories|entries))?|full\s+(?:post|article|story)|permalink|link|here|comments?|"
    r"\d+\s+comments?|leave\s+a\s+comment|[»›→…>.]+|阅读全文.*|阅读更多.*|继续阅读.*|"
    r"查看全文.*|查看更多.*|更多.*|全文.*|続きを読む.*|weiterlesen.*|lire la suite.*|leer más.*)$",
    re.IGNORECASE,
)


def is_generic_link_text(text: str) -> bool:
    """Whether a link's text says "read more" (or "comments") rather than naming the post."""
    return not text or bool(_GENERIC.match(text.strip(" \t\n»›→…>.:")) or _GENERIC.match(text))


_TAXONOMY = frozenset(
    {"tag", "tags", "category", "categories", "author", "authors", "label", "labels", "topic"}
)
_TAXONOMY_TAIL = frozenset(
    {"archive", "archives", "search", "feed", "rss", "atom.xml", "comments", "respond"}
)
_YEARISH = re.compile(r"^\d{1,4}$")
_PAGER_QUERY = re.compile(r"(?:^|&)(?:page|paged|pg)=\d+(?:&|$)")
_COMMENT_FRAGMENT = re.compile(r"comment|respond|disqus|reply", re.IGNORECASE)


def content_link(href: str | None, base: str, page_url: str) -> str | None:
    """`href` made absolute, when it leads to a post-like page of the same site: not the page
    itself, not a tag/category/author/archive/pager page, not a comments anchor."""
    url = safe_http_url(href, base, same_document=False)
    if url is None:
        return None
    parts = urlsplit(url)
    if _COMMENT_FRAGMENT.search(parts.fragment):
        return None
    page = urlsplit(page_url)
    if page.scheme in ("http", "https") and _host(parts.hostname) != _host(page.hostname):
        return None
    bare = url.split("#", 1)[0]
    if bare.rstrip("/") == page_url.split("#", 1)[0].rstrip("/"):
        return None
    segments = [s for s in parts.path.lower().split("/") if s]
    if not segments and not parts.query:
        return None  # the site's home page
    if any(s in _TAXONOMY for s in segments[:-1]) or (segments and segments[0] in _TAXONOMY):
        return None
    if segments and segments[-1] in _TAXONOMY_TAIL:
        return None
    if segments and all(_YEARISH.match(s) for s in segments):
        return None  # /2026/ or /2026/01/: a date archive, or /page/2-like numbering
    if len(segments) >= 2 and segments[-2] == "page" and segments[-1].isdigit():
        return None
    if _PAGER_QUERY.search(parts.query) and len(segments) <= 1:
        return None  # ?page=2, ?paged=2 (but ?p=123 is a WordPress post)
    return bare


def _host(host: str | None) -> str:
    host = (host or "").lower()
    return host[4:] if host.startswith("www.") else host


# --------------------------------------------------------------------------- the result as config


def select_block(rules: SelectRules, *, method: str = "structure") -> str:
    """`rules` as a `[sources.select]` TOML block, to paste under the source's `[[sources]]`."""
    lines = [f"[sources.select]  # found by auto mode ({method}); keep to pin the choice"]
    for field in fields(SelectRules):
        value = getattr(rules, field.name)
        if value is None or (field.name == "max_pages" and value == _DEFAULT_PAGES):
            continue
        lines.append(f"{field.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def layout_changed(previous: str, now: str | None, previous_matches: int, entries: int) -> str:
    """The message of a page whose post list is no longer where auto mode found it before."""
    before = f"the post list read before ({previous!r}) " + (
        "matches nothing now" if not previous_matches else "is no longer the page's post list"
    )
    if now is None:
        return f"{LAYOUT_CHANGED}: {before} and no other was found; add [sources.select]"
    return (
        f"{LAYOUT_CHANGED}: {before}; now reading {now!r} ({entries} entries); "
        "check them, or pin the selectors in [sources.select]"
    )


def auto_report(rules: SelectRules | None, method: str) -> str:
    """What auto mode settled on, for `check --fetch`: a status line, then the block to pin it."""
    label = "selectors: config+auto" if method == "given" else AUTO_SELECTORS
    if rules is None:
        return f"{label} ({method}; no selectors to pin)\n"
    return f"{label} ({method})\n" + select_block(rules, method=method)


def _toml_value(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    text = str(value)
    escaped = []
    for ch in text:
        if ch in '"\\':
            escaped.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            escaped.append(f"\\u{ord(ch):04X}")
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'


# --------------------------------------------------------------------------- detect


_DEFAULT_PAGES = SelectRules().max_pages


def detect(
    tree: LexborHTMLParser, *, url: str, link_base: str, given: SelectRules | None
) -> Detection | None:
    """The rules for this page: `given` with its empty fields filled, or found from scratch.

    None when no post list is found (and `given` names no entry). The tree should have its
    scripts and styles removed.
    """
    finder = _Finder(tree, url, link_base)
    if given is not None and given.entry:
        try:
            blocks = outermost(tree.css(given.entry))
        except SelectolaxError:
            return None  # page.py reports the bad selector
        found = finder.fields(blocks, given.entry)
        return _merge(given, found, "given", len(blocks))
    choice = finder.choose()
    if choice is None:
        return None
    method, entry, blocks = choice
    found = finder.fields(blocks, entry)
    return _merge(given, found, method, len(blocks))


def _merge(given: SelectRules | None, found: SelectRules, method: Method, n: int) -> Detection:
    if given is None:
        filled = tuple(f for f in FIELDS if getattr(found, f))
        return Detection(rules=found, method=method, entries=n, filled=filled)
    changes = {f: getattr(found, f) for f in FIELDS if not getattr(given, f) and getattr(found, f)}
    return Detection(
        rules=replace(given, **changes), method=method, entries=n, filled=tuple(changes)
    )


_SKIP_TAGS = frozenset({"nav", "header", "footer", "aside", "form", "menu", "select", "button"})
_JUNK = re.compile(
    r"^(?:.*[-_])?(?:nav|navbar|navigation|menu|menus|footer|sidebar|widget|widgets|"
    r"tagcloud|cloud|popular|related|recent|trending|comments?|breadcrumbs?|pagination|pager|"
    r"paging|share|sharing|social|subscribe|newsletter|blogroll|toc|masthead|banner|"
    r"categories|tags)(?:[-_].*)?$",
    re.IGNORECASE,
)
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_HEADING_CSS = ", ".join(_HEADINGS)
_IDENT = re.compile(r"^-?[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class _Item:
    """What one member of a candidate group holds."""

    links: tuple[str, ...]  # distinct post-like links
    primary: str | None  # the item's own link among them
    prominent: bool  # its link is a heading link, most of its text, or "read more"
    heading: bool
    dated: bool
    chars: int

    @property
    def counts(self) -> bool:
        return 1 <= len(self.links) <= 3 and self.prominent and self.chars >= 3

    @property
    def score(self) -> float:
        return 1.0 + min(self.chars, 400) / 200 + self.heading + self.dated


class _Finder:
    def __init__(self, tree: LexborHTMLParser, url: str, link_base: str) -> None:
        self.tree = tree
        self.url = url
        self.base = link_base
        self._items: dict[int, _Item] = {}
        self._junk: dict[int, bool] = {}
        self._links: dict[int, str | None] = {}

    # --- links ------------------------------------------------------------------------------

    def link(self, node: LexborNode) -> str | None:
        """The anchor's post-like link (once per anchor: groups share their anchors)."""
        key = node.mem_id
        if key not in self._links:
            self._links[key] = content_link(node.attributes.get("href"), self.base, self.url)
        return self._links[key]

    def anchors(self, block: LexborNode) -> list[LexborNode]:
        own = [block] if block.tag == "a" and block.attributes.get("href") else []
        return own + block.css("a[href]")

    def primary(self, block: LexborNode) -> LexborNode | None:
        """The item's own link: in or around a heading, else the first that names something,
        else a "read more" link."""
        anchors = [a for a in self.anchors(block) if self.link(a) is not None]
        if not anchors:
            return None
        for a in anchors:
            if _in_heading(a, block) or a.css_first(_HEADING_CSS) is not None:
                return a
        for a in anchors:
            if not is_generic_link_text(text_of(a)):
                return a
        return anchors[0]

    # --- one member -------------------------------------------------------------------------

    def item(self, block: LexborNode) -> _Item:
        cached = self._items.get(block.mem_id)
        if cached is not None:
            return cached
        links = tuple(dict.fromkeys(u for a in self.anchors(block) if (u := self.link(a))))
        if not 1 <= len(links) <= 3:
            # Not an item (no post link, or many posts): its text is not needed.
            found = _Item(links, None, prominent=False, heading=False, dated=False, chars=0)
            self._items[block.mem_id] = found
            return found
        text = text_of(block)
        primary = self.primary(block)
        heading = block.css_first(_HEADING_CSS) is not None or block.tag in _HEADINGS
        prominent = False
        if primary is not None:
            label = text_of(primary)
            prominent = (
                _in_heading(primary, block)
                or primary.css_first(_HEADING_CSS) is not None
                or len(label) >= 0.3 * len(text)
                or (len(label) >= 8 and text.startswith(label))
                or any(_TITLE_CLASS.search(c) for c in _classes(primary))
                or is_generic_link_text(label)
            )
        found = _Item(
            links=links,
            primary=self.link(primary) if primary is not None else None,
            prominent=prominent,
            heading=heading,
            dated=block.css_first("time") is not None or date_text(block) is not None,
            chars=len(text),
        )
        self._items[block.mem_id] = found
        return found

    def junk(self, node: LexborNode | None) -> bool:
        """Whether the node or an ancestor (below <body>) is navigation or a side widget."""
        # Up to the nearest ancestor already judged (iteratively: pages may nest deeply), then
        # down again, each node junk when its parent is or it is itself.
        path: list[LexborNode] = []
        verdict = False
        current = node
        while current is not None and current.tag not in ("body", "html", "-undef"):
            known = self._junk.get(current.mem_id)
            if known is not None:
                verdict = known
                break
            path.append(current)
            current = current.parent
        for n in reversed(path):
            verdict = verdict or _is_junk(n)
            self._junk[n.mem_id] = verdict
        return verdict

    # --- the post list ----------------------------------------------------------------------

    def choose(self) -> tuple[Method, str, list[LexborNode]] | None:
        """The entry selector and its items: structured markup when it lists at least as many
        posts as the structure does, else the structure's best group."""
        structure = self._structure()
        markup: tuple[tuple[Method, str], ...] = (
            ("microdata", _MICRODATA),
            ("h-entry", ".h-entry"),
        )
        for method, selector in markup:
            blocks = outermost(self.tree.css(selector))
            if any(self.item(b).links for b in blocks) and (
                structure is None or len(blocks) >= len(structure[1])
            ):
                return method, selector, blocks
        if structure is None:
            return None
        return "structure", structure[0], structure[1]

    def _structure(self) -> tuple[str, list[LexborNode]] | None:
        best: tuple[float, list[LexborNode], LexborNode, str, str | None] | None = None
        root = self.tree.body
        depth: dict[int, int] = {}
        for parent in root.traverse() if root is not None else ():
            up = parent.parent
            level = depth[parent.mem_id] = depth.get(up.mem_id, 0) + 1 if up is not None else 0
            if level > _MAX_DEPTH or self.junk(parent):
                continue
            for tag, cls, members in _groups(parent):
                score = self._score(members)
                if score is not None and (best is None or score > best[0]):
                    best = (score, members, parent, tag, cls)
        if best is None:
            return None
        _, members, parent, tag, cls = best
        return _selector_for(self.tree, members, parent, tag, cls, self._alike)

    def _alike(self, node: LexborNode, parent: LexborNode) -> bool:
        """Whether `node`, matched beside the chosen group, belongs to the same post list split
        in parts (an archive with one list per year): it counts as an item, is no navigation,
        and sits in a parent and grandparent named like the group's."""
        return (
            self.item(node).counts
            and not self.junk(node)
            and _same_kind(node.parent, parent)
            and _same_kind(node.parent.parent if node.parent else None, parent.parent)
        )

    def _score(self, members: list[LexborNode]) -> float | None:
        if len(members) == 1 and not _post_like(members[0]):
            return None  # a lone element is a post only if it says so (checked before its text)
        members = members[:_SCORED]
        if any(self.junk(m) for m in members):
            return None
        items = [self.item(m) for m in members]
        good = [i for i in items if i.counts]
        firsts = {i.primary for i in good}
        if not good or len(firsts) < len(good) * 0.8:
            return None  # the members lead to the same pages: one post's parts, not a list
        mean = sum(i.score for i in good) / len(good)
        if mean < 1.5:
            return None  # short bare links: a menu or a link list, not posts
        if len(good) == 1 and not _single_post(members[items.index(good[0])], good[0]):
            return None
        return sum(i.score for i in good) - 1.5 * (len(items) - len(good))

    # --- fields within the items ------------------------------------------------------------

    def fields(self, blocks: list[LexborNode], entry: str) -> SelectRules:
        """The selectors of each field within `blocks` (the first of them), and the pager."""
        pager = self._next(blocks)
        blocks = blocks[:_FIELD_SAMPLE]

        def pick(field: str, fallback: Callable[[list[LexborNode]], str | None]) -> str | None:
            for selector, share in _MARKUP_FIELDS[field]:
                if sum(b.css_first(selector) is not None for b in blocks) >= share * len(blocks):
                    return selector
            return fallback(blocks)

        return SelectRules(
            entry=entry,
            title=pick("title", self._title),
            link=pick("link", self._link),
            date=pick("date", self._date),
            excerpt=pick("excerpt", self._excerpt),
            category=pick("category", self._category),
            next=pager,
        )

    def _title(self, blocks: list[LexborNode]) -> str | None:
        tags = Counter(h.tag for b in blocks if (h := b.css_first(_HEADING_CSS)) is not None)
        if not tags:
            return None
        tag, count = min(tags.items(), key=lambda kv: (-kv[1], kv[0]))
        return tag if count >= 0.6 * len(blocks) else None

    def _link(self, blocks: list[LexborNode]) -> str | None:
        primaries = [(b, p) for b in blocks if (p := self.primary(b)) is not None]
        if not primaries:
            return None
        candidates: list[str] = []
        for h in _HEADINGS:
            candidates.append(f"{h} a[href]")
        classes = Counter(c for _, p in primaries for c in _classes(p))
        candidates += [f"a.{c}" for c, _ in sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))]
        for selector in candidates:
            hits = sum(1 for b, p in primaries if _first_is(b, selector, p))
            if hits >= 0.8 * len(blocks):
                return selector
        return None

    def _date(self, blocks: list[LexborNode]) -> str | None:
        nodes = [(b, n) for b in blocks if (n := date_node(b)) is not None]
        if not nodes:
            return None
        return _common_selector(nodes, len(nodes) * 0.8)

    def _excerpt(self, blocks: list[LexborNode]) -> str | None:
        nodes = []
        for b in blocks:
            for n in _descendants(b):
                if any(_SUMMARY.match(c) for c in _classes(n)):
                    nodes.append((b, n))
                    break
        if len(nodes) >= 0.6 * len(blocks):
            return _common_selector(nodes, len(nodes) * 0.8)
        # Else the item's longest paragraph, when it holds most of the item's text.
        nodes = []
        for b in blocks:
            paragraphs = b.css("p")
            if paragraphs:
                longest = max(paragraphs, key=lambda n: len(text_of(n)))
                if len(text_of(longest)) >= 0.5 * len(text_of(b)):
                    nodes.append((b, longest))
        if len(nodes) < 0.6 * len(blocks):
            return None
        return _common_selector(nodes, len(nodes) * 0.8)

    def _category(self, blocks: list[LexborNode]) -> str | None:
        for selector in ('a[rel~="tag"]', 'a[rel~="category"]'):
            if any(b.css_first(selector) is not None for b in blocks):
                return selector
        nodes = []
        for b in blocks:
            for n in _descendants(b):
                if any(_CATEGORY.match(c) for c in _classes(n)) and text_of(n):
                    target = n.css_first("a") if n.css_first("a") is not None else n
                    nodes.append((b, target if target is not None else n))
                    break
        if nodes:
            found = _common_selector(nodes, len(nodes) * 0.8)
            if found is not None:
                return found
        for part in ("category", "categories", "tag", "tags"):
            selector = f'a[href*="/{part}/"]'
            if any(b.css_first(selector) is not None for b in blocks):
                return selector
        return None

    # --- the pager --------------------------------------------------------------------------

    def _next(self, blocks: list[LexborNode]) -> str | None:
        inside = {b.mem_id for b in blocks}

        def usable(selector: str) -> bool:
            try:
                nodes = self.tree.css(selector)
            except SelectolaxError:
                return False
            return any(self._pager_url(n) is not None and not _within(n, inside) for n in nodes)

        for selector in ('a[rel~="next"]', 'link[rel~="next"]'):
            if usable(selector):
                return selector
        anchors = [a for a in self.tree.css("a[href]") if not _within(a, inside)]
        for a in anchors:
            for c in _classes(a):
                if _NEXT_CLASS.match(c) and usable(f"a.{c}"):
                    return f"a.{c}"
            parent = a.parent
            if parent is not None and parent.tag == "li":
                for c in _classes(parent):
                    if _NEXT_CLASS.match(c) and usable(f"li.{c} a"):
                        return f"li.{c} a"
        # A next/older link by its text, else a numbered page link: all the links of its
        # container are followed, when every one of them is a pager link (not a menu).
        for wanted in (_NEXT_TEXT.match, _PAGE_NUMBER.match):
            for a in anchors:
                if wanted(_label(a)) and self._pager_url(a) is not None:
                    container = _pager_container(a)
                    if (
                        container is not None
                        and usable(container)
                        and _pager_only(container, self.tree)
                    ):
                        return container
        return None

    def _pager_url(self, node: LexborNode) -> str | None:
        href = node.attributes.get("href")
        url = safe_http_url(href, self.base, same_document=False)
        if url is None and href and not self.url.lower().startswith(("http:", "https:")):
            url = href if not href.startswith("#") else None
        if url is None or url.split("#", 1)[0] == self.url.split("#", 1)[0]:
            return None
        page = urlsplit(self.url)
        if page.scheme in ("http", "https") and _host(urlsplit(url).hostname) != _host(
            page.hostname
        ):
            return None  # further pages are on the same site
        return url


# Fields named by microdata or microformats, with the share of items that must carry them.
_MARKUP_FIELDS: dict[str, tuple[tuple[str, float], ...]] = {
    "title": (('[itemprop="headline"]', 0.6), (".p-name", 0.6)),
    "link": (('[itemprop="url"]', 0.6), (".u-url", 0.6)),
    "date": (('[itemprop="datePublished"]', 0.5), (".dt-published", 0.5)),
    "excerpt": (('[itemprop="description"]', 0.6), (".p-summary", 0.6), (".e-content", 0.6)),
    "category": (
        ('[itemprop="keywords"]', 0.01),
        ('[itemprop="articleSection"]', 0.01),
        (".p-category", 0.01),
    ),
}
_POST_CLASS = re.compile(r"post|entry|article|card|story|item", re.IGNORECASE)
_MAX_DEPTH = 48  # post lists deeper in the page are not looked for (bounds the work)
_SCORED = 200  # members of one group scored at most: a longer list is a list all the same
_FIELD_SAMPLE = 60  # items the field selectors are chosen on
_TITLE_CLASS = re.compile(r"title|headline|permalink", re.IGNORECASE)
_MICRODATA = (
    '[itemscope][itemtype*="BlogPosting"], [itemscope][itemtype*="schema.org/Article"], '
    '[itemscope][itemtype*="NewsArticle"], [itemscope][itemtype*="TechArticle"]'
)
_SUMMARY = re.compile(
    r"^(?:.*[-_])?(?:summary|excerpt|description|desc|abstract|intro|teaser|preview|"
    r"subtitle|lede|lead|p-summary|e-content)(?:[-_].*)?$",
    re.IGNORECASE,
)
_CATEGORY = re.compile(
    r"^(?:.*[-_])?(?:cat|cats|category|categories|tag|tags|label|labels|topic|topics|"
    r"p-category|section|badge)(?:[-_].*)?$",
    re.IGNORECASE,
)
_NEXT_CLASS = re.compile(r"^(?:.*[-_])?(?:next|older|nextpostslink)(?:[-_].*)?$", re.IGNORECASE)
_NEXT_TEXT = re.compile(
    r"^(?:next|older|earlier)(?:\s+(?:page|posts?|entries|articles))?\s*[»›→>]*$|"
    r"^more\s+(?:posts|entries|articles)\s*[»›→>]*$|"
    r"^[»›→>]+$|^(?:下一页|下页|后一页|次へ|次のページ|weiter|suivant|siguiente).*$",
    re.IGNORECASE,
)
_PAGE_NUMBER = re.compile(r"^\d{1,4}$")
# What a pager's links say: numbers, next/previous/first/last, arrows, an ellipsis.
_PAGER_TEXT = re.compile(
    r"^(?:\d{1,4}|[«‹←»›→<>…]+|\.\.\.|(?:next|previous|prev|older|newer|earlier|later|first|last)"
    r"(?:\s+(?:page|posts?|entries|articles))?\s*[«‹←»›→<>]*|[«‹←<]*\s*(?:previous|prev|newer)"
    r"(?:\s+(?:page|posts?|entries|articles))?|(?:page|seite|第)\s*\d+\s*页?|"
    r"上一页|下一页|上页|下页|前一页|后一页|首页|末页|尾页|次へ|前へ)?$",
    re.IGNORECASE,
)


def _is_junk(node: LexborNode) -> bool:
    """Whether the element itself is navigation, a header or footer, or a side widget."""
    attrs = node.attributes
    words = (attrs.get("class") or "").split() + (attrs.get("id") or "").split()
    role = (attrs.get("role") or "").lower()
    return (
        node.tag in _SKIP_TAGS
        or role in ("navigation", "banner", "contentinfo", "complementary")
        or any(_JUNK.match(w) for w in words)
    )


def _post_like(block: LexborNode) -> bool:
    """An <article>, or an element whose class says post, entry, card ..."""
    return block.tag == "article" or any(_POST_CLASS.search(c) for c in _classes(block))


def _single_post(block: LexborNode, item: _Item) -> bool:
    """A lone member is a post only when it looks like one: an article or post-like class,
    with a heading and some text."""
    return _post_like(block) and item.heading and item.chars >= 60


def _groups(parent: LexborNode) -> Iterable[tuple[str, str | None, list[LexborNode]]]:
    """Candidate groups among `parent`'s children: those of one tag, and those of one tag
    sharing one class."""
    by_tag: dict[str, list[LexborNode]] = {}
    for child in parent.iter():
        if child.tag and not child.tag.startswith("-"):
            by_tag.setdefault(child.tag, []).append(child)
    for tag, members in by_tag.items():
        if tag in _SKIP_TAGS or tag in ("script", "style", "br", "hr", "img"):
            continue
        yield tag, None, members
        shared = Counter(c for m in members for c in set(_classes(m)))
        for cls, count in sorted(shared.items()):
            if count < len(members) and (count >= 2 or len(members) == 1):
                yield tag, cls, [m for m in members if cls in _classes(m)]


def _descendants(node: LexborNode) -> list[LexborNode]:
    """The elements inside `node`, in document order (`css("*")` also yields the node)."""
    return [n for n in node.css("*") if n.mem_id != node.mem_id]


def _classes(node: LexborNode) -> list[str]:
    return [c for c in (node.attributes.get("class") or "").split() if _IDENT.match(c)]


def _in_heading(node: LexborNode, block: LexborNode) -> bool:
    parent = node.parent
    while parent is not None and parent.mem_id != block.mem_id:
        if parent.tag in _HEADINGS:
            return True
        parent = parent.parent
    return False


def _within(node: LexborNode, blocks: set[int]) -> bool:
    parent: LexborNode | None = node
    while parent is not None:
        if parent.mem_id in blocks:
            return True
        parent = parent.parent
    return False


def date_node(block: LexborNode) -> LexborNode | None:
    """A `<time>` in the block, else the element around the first date written as text, when
    its whole text is that date."""
    node = block.css_first("time")
    if node is not None:
        return node
    found = _date_text_node(block)
    if found is None or found.parent is None or found.parent.mem_id == block.mem_id:
        return None
    parent = found.parent
    text = text_of(parent)
    return parent if len(text) <= 40 and is_date(text) else None


_SEPARATORS = " \t\n\r\xa0—–-|·•:,()[]"


def date_text(block: LexborNode) -> str | None:
    """A date written as text in the block (`2026-01-05 — <a>...</a>`), if any."""
    node = _date_text_node(block)
    return _date_of(node) if node is not None else None


def _date_text_node(block: LexborNode) -> LexborNode | None:
    for node in block.traverse(include_text=True):
        if node.tag == "-text" and _date_of(node):
            return node
    return None


def _date_of(node: LexborNode) -> str | None:
    text = node.text_content or ""
    if len(text) > 80:
        return None
    text = " ".join(text.split()).strip(_SEPARATORS)
    return text if text and len(text) <= 40 and is_date(text) else None


def _first_is(block: LexborNode, selector: str, node: LexborNode) -> bool:
    try:
        first = block.css_first(selector)
    except SelectolaxError:
        return False
    return first is not None and first.mem_id == node.mem_id


def _common_selector(nodes: list[tuple[LexborNode, LexborNode]], need: float) -> str | None:
    """A selector, relative to each block, whose first match is the given node in enough blocks:
    `tag.class` for a class they share, else the bare tag."""
    candidates: list[str] = []
    tags = Counter(n.tag or "" for _, n in nodes)
    classes = Counter((n.tag or "", c) for _, n in nodes for c in _classes(n))
    for (tag, cls), _ in sorted(classes.items(), key=lambda kv: (-kv[1], kv[0])):
        candidates += [f".{cls}", f"{tag}.{cls}"]
    candidates += [t for t, _ in sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))]
    for selector in candidates:
        if sum(1 for b, n in nodes if _first_is(b, selector, n)) >= need:
            return selector
    return None


def _label(anchor: LexborNode) -> str:
    return text_of(anchor) or (anchor.attributes.get("aria-label") or "").strip()


def _pager_only(selector: str, tree: LexborHTMLParser) -> bool:
    """Whether every link `selector` finds reads like a pager link."""
    try:
        return all(_PAGER_TEXT.match(_label(a)) for a in tree.css(selector))
    except SelectolaxError:
        return False


def _pager_container(anchor: LexborNode) -> str | None:
    """`<container> a` for the nearest ancestor (within three levels) with a class or id."""
    parent, depth = anchor.parent, 0
    while parent is not None and depth < 3 and parent.tag not in ("body", "html"):
        ident = parent.attributes.get("id")
        if ident and _IDENT.match(ident):
            return f"#{ident} a"
        classes = _classes(parent)
        if classes:
            return f"{parent.tag}.{classes[0]} a"
        parent, depth = parent.parent, depth + 1
    return None


def _same_kind(a: LexborNode | None, b: LexborNode | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.tag == b.tag and sorted(_classes(a)) == sorted(_classes(b)) and bool(_classes(a))


def _selector_for(
    tree: LexborHTMLParser,
    members: list[LexborNode],
    parent: LexborNode,
    tag: str,
    cls: str | None,
    alike: Callable[[LexborNode, LexborNode], bool],
) -> tuple[str, list[LexborNode]] | None:
    """A CSS selector whose outermost matches on the page are `members` (and, beyond them,
    only nodes `alike` them), with its matches: as general as that allows, so that the page's
    further pages match it too."""
    want = {m.mem_id for m in members}
    sig = f"{tag}.{cls}" if cls else tag
    candidates = [sig] if cls else []
    parent_sigs = _signatures(parent)
    candidates += [f"{p} > {sig}" for p in parent_sigs]
    grand = parent.parent
    if grand is not None and grand.tag not in ("html", "-undef"):
        candidates += [f"{g} > {p} > {sig}" for g in _signatures(grand) for p in parent_sigs]
    candidates.append(f"{_path(parent)} > {sig}")
    for selector in candidates:
        try:
            got = outermost(tree.css(selector))
        except SelectolaxError:
            continue
        ids = {n.mem_id for n in got}
        if ids >= want and all(n.mem_id in want or alike(n, parent) for n in got):
            return selector, got
    return None


def _signatures(node: LexborNode) -> list[str]:
    """Ways to name `node` in a selector, most telling first."""
    out = []
    ident = node.attributes.get("id")
    if ident and _IDENT.match(ident):
        out.append(f"#{ident}")
    out += [f"{node.tag}.{c}" for c in _classes(node)]
    out.append(node.tag or "*")
    return out


def _path(node: LexborNode) -> str:
    """`body > div:nth-child(2) > ...` down to `node`."""
    steps: list[str] = []
    current: LexborNode | None = node
    while current is not None and current.tag not in ("body", "html", "-undef"):
        parent = current.parent
        if parent is None:
            break
        siblings = [c for c in parent.iter() if c.tag and not c.tag.startswith("-")]
        index = next(i for i, c in enumerate(siblings, 1) if c.mem_id == current.mem_id)
        steps.append(f"{current.tag}:nth-child({index})")
        current = parent
    return " > ".join(["body", *reversed(steps)])
