"""Write the merged Atom feed and the JSON snapshot, atomically and only when bytes change.

Every value that reaches an output is plain text from the normalizer (feedgen escapes it), so
no source markup is ever copied into a feed. Output that did not change is byte-identical: the
feed's `updated` is its newest entry's, never "now".
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator import __version__
from aggregator.errors import EmitError
from aggregator.models import Entry, Source, SourceState

if TYPE_CHECKING:
    from feedgen.feed import FeedGenerator
    from lxml import etree

FEED_FILE = "feed.atom"
SNAPSHOT_FILE = "snapshot.json"
SNAPSHOT_VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FeedMeta:
    """What the merged feed says about itself."""

    title: str  # feed title
    link: str  # the site's public URL
    id: str  # the feed's Atom id
    subtitle: str | None = None  # optional description
    author: str | None = None  # optional author name
    self_url: str | None = None  # public URL of feed.atom
    hub: str | None = None  # WebSub hub (Atom rel="hub", JSON Feed hubs)
    links: tuple[tuple[str, str], ...] = ()  # more (rel, href): RFC 5005 archive links
    archive: bool = False  # an RFC 5005 archive document (fh:archive)
    json_url: str | None = None  # public URL of this document's JSON Feed (feed_url)
    next_url: str | None = None  # JSON Feed next_url: the next older document


def public_url(source: Source) -> str | None:
    """The address a reader may follow for a source; a local file path is never published."""
    return source.url if source.is_remote else None


def render_atom(meta: FeedMeta, entries: Sequence[Entry], sources: Mapping[str, Source]) -> bytes:
    """The Atom 1.0 document for `entries` (already newest first)."""
    # Imported here: the server imports this module for its file names and never renders Atom.
    from feedgen.feed import FeedGenerator

    fg = FeedGenerator()
    fg.id(meta.id)
    fg.title(meta.title)
    fg.link(href=meta.link, rel="alternate")
    if meta.self_url:
        fg.link(href=meta.self_url, rel="self", type="application/atom+xml")
    for rel, href in meta.links:
        fg.link(href=href, rel=rel, type="application/atom+xml")
    if meta.hub:
        fg.link(href=meta.hub, rel="hub")
    if meta.subtitle:
        fg.subtitle(meta.subtitle)
    if meta.author:
        fg.author(name=meta.author)
    if meta.archive:
        fg.register_extension("archive", _ArchiveExtension, atom=True, rss=False)
    fg.generator("aggregator", version=__version__)
    fg.updated(max((e.updated for e in entries), default=EPOCH))
    for entry in entries:
        _add_entry(fg, entry, sources)
    atom: bytes = fg.atom_str(pretty=True)
    return atom


def _add_entry(fg: FeedGenerator, entry: Entry, sources: Mapping[str, Source]) -> None:
    fe = fg.add_entry(order="append")
    fe.id(entry.id)
    fe.title(entry.title)
    fe.updated(entry.updated)
    if entry.published:
        fe.published(entry.published)
    if entry.link:
        fe.link(href=entry.link, rel="alternate", type="text/html")
    for other in sorted({p.link for p in entry.sources if p.link and p.link != entry.link}):
        fe.link(href=other, rel="via")
    fe.summary(entry.excerpt or entry.title, type="text")
    if not entry.link:
        # RFC 4287 4.1.1: an entry without an alternate link must carry content.
        fe.content(entry.excerpt or entry.title, type="text")
    for name in entry.authors:
        fe.author(name=name)
    for cat in entry.categories:
        fe.category(term=cat)
    src = sources.get(entry.source)
    fe.register_extension("aggregator_source", _SourceExtension, atom=True, rss=False)
    fe.aggregator_source.set(entry.source, public_url(src) if src else None)


FH_NS = "http://purl.org/syndication/history/1.0"


class _ArchiveExtension:
    """Adds `<fh:archive/>` (RFC 5005 section 4): the document is an archive page."""

    def extend_ns(self) -> dict[str, str]:
        return {"fh": FH_NS}

    def extend_atom(self, feed: etree._Element) -> etree._Element:
        from lxml import etree

        etree.SubElement(feed, f"{{{FH_NS}}}archive")
        return feed


class _SourceExtension:
    """Adds `<source>` (RFC 4287 4.2.11) naming the source an entry came from."""

    def __init__(self) -> None:
        self.name = ""
        self.url: str | None = None

    def set(self, name: str, url: str | None) -> None:
        self.name, self.url = name, url

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, entry: etree._Element) -> etree._Element:
        from lxml import etree

        # Like feedgen's own elements, these take the feed's default (Atom) namespace.
        src = etree.SubElement(entry, "source")
        if self.url:
            etree.SubElement(src, "id").text = self.url
        etree.SubElement(src, "title").text = self.name
        if self.url:
            etree.SubElement(src, "link", href=self.url)
        return entry


def _dt(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def snapshot_entry(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "title": entry.title,
        "link": entry.link,
        "published": _dt(entry.published),
        "updated": _dt(entry.updated),
        "first_seen": _dt(entry.first_seen),
        "excerpt": entry.excerpt,
        "categories": list(entry.categories),
        "authors": list(entry.authors),
        "source": entry.source,
        "sources": [
            {"name": p.source, "link": p.link, "first_seen": _dt(p.first_seen)}
            for p in entry.sources
        ],
        "duplicates": [
            {"source": d.source, "key": d.key, "rule": d.rule, "score": d.score}
            for d in entry.duplicates
        ],
    }


def render_snapshot(
    meta: FeedMeta,
    entries: Sequence[Entry],
    sources: Sequence[Source],
    states: Mapping[str, SourceState],
    counts: Mapping[str, int],
    generated_at: datetime,
) -> bytes:
    doc = {
        "version": SNAPSHOT_VERSION,
        "generated_at": _dt(generated_at),
        "feed": {
            "title": meta.title,
            "link": meta.link,
            "id": meta.id,
            "updated": _dt(max((e.updated for e in entries), default=EPOCH)),
        },
        "sources": [
            _snapshot_source(s, states.get(s.name), counts.get(s.name, 0)) for s in sources
        ],
        "entries": [snapshot_entry(e) for e in entries],
    }
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _snapshot_source(source: Source, state: SourceState | None, count: int) -> dict[str, Any]:
    return {
        "name": source.name,
        "url": public_url(source) or Path(source.url).name,
        "kind": source.kind,
        "status": (state.last_status if state else None) or "new",
        "last_fetch": _dt(state.last_fetch) if state else None,
        "last_success": _dt(state.last_success) if state else None,
        "error": state.error if state else None,
        "entries": count,
        # after repeated permanent redirects the source is read here; the config is unchanged
        "moved_to": state.effective_url if state and source.is_remote else None,
        "next_due": _dt(state.next_due) if state else None,
    }


def write_if_changed(directory: Path, name: str, data: bytes) -> bool:
    """Atomically replace `directory/name` with `data` unless it already holds exactly that.

    The name is one of ours, never a config or feed value; a temp file in the same folder is
    renamed over the old one, so readers see the old bytes or the new, never a mix. Returns
    whether the file changed.
    """
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise EmitError(f"refusing to write outside {directory}: {name!r}")
    target = directory / name
    try:
        if target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise EmitError(f"{target}: cannot read: {exc.strerror}") from None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise EmitError(f"{directory}: cannot write outputs: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise EmitError(f"{target}: cannot write: {exc.strerror}") from None
    return True


# --- JSON Feed 1.1 and the HTML page (same entries, same write path) ----------------------------

JSON_FEED_FILE = "feed.json"
INDEX_FILE = "index.html"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


def render_json_feed(meta: FeedMeta, entries: Sequence[Entry]) -> bytes:
    """The JSON Feed 1.1 document for `entries` (already newest first)."""
    doc: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": meta.title,
        "home_page_url": meta.link,
    }
    if meta.json_url:
        doc["feed_url"] = meta.json_url
    elif meta.self_url:
        base = meta.self_url.rsplit("/", 1)[0]
        doc["feed_url"] = f"{base}/{JSON_FEED_FILE}"
    if meta.next_url:
        doc["next_url"] = meta.next_url
    if meta.subtitle:
        doc["description"] = meta.subtitle
    if meta.author:
        doc["authors"] = [{"name": meta.author}]
    if meta.hub:
        doc["hubs"] = [{"type": "WebSub", "url": meta.hub}]
    doc["items"] = [_json_feed_item(e) for e in entries]
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _json_feed_item(entry: Entry) -> dict[str, Any]:
    item: dict[str, Any] = {"id": entry.id}
    if entry.link:
        item["url"] = entry.link
    item["title"] = entry.title
    item["content_text"] = entry.excerpt or entry.title
    if entry.published:
        item["date_published"] = _dt(entry.published)
    item["date_modified"] = _dt(entry.updated)
    if entry.authors:
        item["authors"] = [{"name": a} for a in entry.authors]
    if entry.categories:
        item["tags"] = list(entry.categories)
    item["_aggregator"] = {
        "source": entry.source,
        "sources": sorted({p.source for p in entry.sources}),
    }
    return item


_PAGE_CSS = """\
:root{color-scheme:light dark;--fg:#222;--muted:#666;--bg:#fff;--line:#ddd;--tag:#eef;
--link:#0645ad;--err:#a00}
@media (prefers-color-scheme:dark){:root{--fg:#ddd;--muted:#9a9a9a;--bg:#131417;--line:#34363b;
--tag:#2a2f45;--link:#8ab4f8;--err:#ff8a80}}
body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;
color:var(--fg);background:var(--bg)}a{color:var(--link)}
h1{font-size:1.6rem;margin-bottom:.2rem}h1 a{color:inherit;text-decoration:none}
h2{font-size:1.2rem;margin-top:2rem}
.sub{color:var(--muted);margin-top:0}ol{padding:0;list-style:none}li.entry{margin:0 0 1.2rem}
.meta{color:var(--muted);font-size:.85rem}.cat{background:var(--tag);border-radius:3px;
padding:0 .3rem}.excerpt{margin:.2rem 0 0;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:.9rem;width:100%}
td,th{border-bottom:1px solid var(--line);padding:.3rem;text-align:left}.error{color:var(--err)}
nav.cats{font-size:.85rem;line-height:2}nav.cats a{margin-right:.4rem;white-space:nowrap}
nav.pages{display:flex;justify-content:space-between;margin:1.5rem 0}
.also a,.source a,a.cat{color:inherit}a.cat{text-decoration:none}
@media (max-width:40rem){#sources th:nth-child(2),#sources td:nth-child(2){display:none}}"""
# Categories offered as filters on one page, the most used first.
MAX_FILTERS = 40


def _e(value: object) -> str:
    """Escape for HTML text and double-quoted attributes."""
    return html.escape(str(value), quote=True)


def site_url(source: Source | None) -> str | None:
    """The site of a source, for a link on its name: the origin of its public address."""
    url = public_url(source) if source else None
    if not url:
        return None
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0].split('#', 1)[0]}/"


def _head(title: str, root: str, feeds: Sequence[tuple[str, str]]) -> list[str]:
    """The document's start: `feeds` are (file stem, title) advertised as alternates."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
    ]
    for stem, feed_title in feeds:
        out.append(
            f'<link rel="alternate" type="application/atom+xml" title="{_e(feed_title)} (Atom)" '
            f'href="{root}{_e(stem)}.atom">'
        )
        out.append(
            f'<link rel="alternate" type="application/feed+json" '
            f'title="{_e(feed_title)} (JSON Feed)" href="{root}{_e(stem)}.json">'
        )
    return out


def _filters(entries: Sequence[Entry]) -> tuple[dict[str, int], list[str], str]:
    """The category filter: each offered category's number (by casefold), the nav and the
    empty targets before the list, and the CSS that hides what a chosen category does not
    hold. It works with `:target`, without JavaScript."""
    counts: dict[str, int] = {}
    shown: dict[str, str] = {}
    for entry in entries:
        for cat in entry.categories:
            key = cat.casefold()
            counts[key] = counts.get(key, 0) + 1
            shown.setdefault(key, cat)
    offered = sorted(counts, key=lambda k: (-counts[k], k))[:MAX_FILTERS]
    numbers = {key: i for i, key in enumerate(sorted(offered), 1)}
    if not numbers:
        return {}, [], ""
    nav = ['<nav class="cats" aria-label="Categories">Show: <a href="#">all</a>']
    for key, i in numbers.items():
        nav.append(f'<a href="#c{i}">{_e(shown[key])}</a>')
    nav.append("</nav>")
    nav.extend(f'<div id="c{i}"></div>' for i in numbers.values())
    css = "".join(
        f"#c{i}:target~ol li.entry:not(.c{i}){{display:none}}"
        f'body:has(#c{i}:target) a[href="#c{i}"]{{font-weight:bold}}'
        for i in numbers.values()
    )
    return numbers, nav, css


def _entry_list(
    entries: Sequence[Entry], sources: Mapping[str, Source], numbers: Mapping[str, int]
) -> list[str]:
    out = ['<ol id="latest">']
    out.extend(_index_entry(entry, sources, numbers) for entry in entries)
    out.append("</ol>")
    return out


def render_index(
    meta: FeedMeta,
    entries: Sequence[Entry],
    sources: Sequence[Source],
    states: Mapping[str, SourceState],
    counts: Mapping[str, int],
    generated_at: datetime,
    *,
    outputs: Sequence[tuple[str, str]] = (),
    history: int | None = None,
) -> bytes:
    """A small readable page of the latest entries and the sources' status; every value escaped.

    `outputs` are the other feeds, (file stem, title); `history` the newest archive page of the
    main feed, rendered as archive/feed/<page>.html. The page depends only on stored data (no
    wall clock), so it is byte-identical when nothing changed.
    """
    by_name = {s.name: s for s in sources}
    numbers, filters, filter_css = _filters(entries)
    out = _head(meta.title, "", [(FEED_FILE.removesuffix(".atom"), meta.title), *outputs])
    out.append(f"<style>{_PAGE_CSS}{filter_css}</style></head><body>")
    out.append(f"<h1>{_e(meta.title)}</h1>")
    if meta.subtitle:
        out.append(f'<p class="sub">{_e(meta.subtitle)}</p>')
    out.append(
        f'<p class="sub">Subscribe: <a href="{FEED_FILE}">Atom</a> · '
        f'<a href="{JSON_FEED_FILE}">JSON Feed</a> · updated '
        f'<time datetime="{_e(_dt(generated_at))}">{_e(_day(generated_at, True))}</time></p>'
    )
    if outputs:
        links = " · ".join(
            f'<a href="{_e(stem)}.atom">{_e(title)}</a> (<a href="{_e(stem)}.json">JSON</a>)'
            for stem, title in outputs
        )
        out.append(f'<p class="sub" id="outputs">More feeds: {links}</p>')
    out.append("<h2>Latest updates</h2>")
    out.extend(filters)
    out.extend(_entry_list(entries, by_name, numbers))
    if not entries:
        out.append("<p>Nothing yet: no source has been fetched.</p>")
    if history:
        out.append(
            f'<nav class="pages"><span></span><a href="archive/feed/{history}.html" '
            'rel="prev">Older entries →</a></nav>'
        )
    out.extend(_sources_table(sources, states, counts))
    out.append(f'<p class="meta">aggregator {_e(__version__)}</p></body></html>')
    return ("\n".join(out) + "\n").encode("utf-8")


def _sources_table(
    sources: Sequence[Source], states: Mapping[str, SourceState], counts: Mapping[str, int]
) -> list[str]:
    """The sources' status table: one row per source."""
    out = [
        '<h2>Sources</h2><table id="sources"><thead><tr><th>Source</th><th>Kind</th>'
        "<th>Status</th><th>Last fetch</th><th>Entries</th></tr></thead><tbody>"
    ]
    for s in sources:
        row = _snapshot_source(s, states.get(s.name), counts.get(s.name, 0))
        status = _e(row["status"])
        if row["error"]:
            status = f'<span class="error">{status}: {_e(row["error"])}</span>'
        fetched = states.get(s.name)
        when = _day(fetched.last_fetch, True) if fetched and fetched.last_fetch else "never"
        out.append(
            f"<tr><td>{_e(s.name)}</td><td>{_e(s.kind)}</td><td>{status}</td>"
            f"<td>{_e(when)}</td><td>{row['entries']}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def render_history(
    meta: FeedMeta,
    entries: Sequence[Entry],
    sources: Mapping[str, Source],
    page: int,
    pages: int,
) -> bytes:
    """Archive page `page` of `pages` as an HTML page (archive/feed/<page>.html), with links
    to the newer and older pages. Like the archive documents, a sealed page never changes."""
    numbers, filters, filter_css = _filters(entries)
    root = "../../"
    title = f"{meta.title}: older entries, page {page}"
    out = _head(title, root, [(FEED_FILE.removesuffix(".atom"), meta.title)])
    out.append(f"<style>{_PAGE_CSS}{filter_css}</style></head><body>")
    out.append(f'<h1><a href="{root}">{_e(meta.title)}</a></h1>')
    out.append(f'<p class="sub">Older entries, page {page} (page 1 is the oldest)</p>')
    newer = f"{page + 1}.html" if page < pages else root
    nav = f'<nav class="pages"><a href="{newer}" rel="next">← Newer entries</a>'
    nav += (
        f'<a href="{page - 1}.html" rel="prev">Older entries →</a>' if page > 1 else "<span></span>"
    )
    nav += "</nav>"
    out.append(nav)
    out.extend(filters)
    out.extend(_entry_list(entries, sources, numbers))
    if not entries:
        out.append("<p>Nothing on this page yet.</p>")
    out.append(nav)
    out.append(f'<p class="meta">aggregator {_e(__version__)}</p></body></html>')
    return ("\n".join(out) + "\n").encode("utf-8")


def _day(value: datetime, with_time: bool = False) -> str:
    fmt = "%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d"
    return value.astimezone(UTC).strftime(fmt)


def _source_name(name: str, sources: Mapping[str, Source]) -> str:
    site = site_url(sources.get(name))
    return f'<a href="{_e(site)}">{_e(name)}</a>' if site else _e(name)


def _index_entry(entry: Entry, sources: Mapping[str, Source], numbers: Mapping[str, int]) -> str:
    title = _e(entry.title)
    if entry.link and entry.link.startswith(("http://", "https://")):
        title = f'<a href="{_e(entry.link)}">{title}</a>'
    when = entry.published or entry.updated
    cats = "".join(
        f' <a class="cat" href="#c{numbers[c.casefold()]}">{_e(c)}</a>'
        if c.casefold() in numbers
        else f' <span class="cat">{_e(c)}</span>'
        for c in entry.categories
    )
    classes = "".join(
        f" c{numbers[c.casefold()]}" for c in entry.categories if c.casefold() in numbers
    )
    others = sorted({p.source for p in entry.sources} - {entry.source})
    also = (
        ' · <span class="also">also at: '
        + ", ".join(_source_name(name, sources) for name in others)
        + "</span>"
        if others
        else ""
    )
    return (
        f'<li class="entry{classes}"><div class="title"><strong>{title}</strong></div>'
        f'<div class="meta"><time datetime="{_e(_dt(when))}">{_e(_day(when))}</time> · '
        f'<span class="source">{_source_name(entry.source, sources)}</span>{also}{cats}</div>'
        f'<p class="excerpt">{_e(entry.excerpt)}</p></li>'
    )
