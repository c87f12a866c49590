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
from aggregator.models import Entry, Source, SourceState, display_title
from aggregator.problems import plain_words

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
    if meta.subtitle:
        fg.subtitle(meta.subtitle)
    if meta.author:
        fg.author(name=meta.author)
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
        "selectors": source.selectors,
        "status": (state.last_status if state else None) or "new",
        "last_fetch": _dt(state.last_fetch) if state else None,
        "last_success": _dt(state.last_success) if state else None,
        "error": state.error if state else None,
        "entries": count,
        # after repeated permanent redirects the source is read here; the config is unchanged
        "moved_to": state.effective_url if state and source.is_remote else None,
        "next_due": _dt(state.next_due) if state else None,
        "title": display_title(source, state),
        "site_link": state.site_link if state else None,
        "interval_seconds": source.interval_seconds,  # /healthz judges last_success by it
        "warnings": list(state.warnings) if state else [],  # survivable problems, last read
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
    if meta.self_url:
        base = meta.self_url.rsplit("/", 1)[0]
        doc["feed_url"] = f"{base}/{JSON_FEED_FILE}"
    if meta.subtitle:
        doc["description"] = meta.subtitle
    if meta.author:
        doc["authors"] = [{"name": meta.author}]
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
body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem}
.sub{color:#666;margin-top:0}ol{padding:0;list-style:none}li.entry{margin:0 0 1.2rem}
.meta{color:#666;font-size:.85rem}.cat{background:#eef;border-radius:3px;padding:0 .3rem}
.excerpt{margin:.2rem 0 0}table{border-collapse:collapse;font-size:.9rem;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left}.error{color:#a00}
.warnings{margin:.2rem 0 0;padding-left:1rem;color:#850;font-size:.85rem}"""


def _e(value: object) -> str:
    """Escape for HTML text and double-quoted attributes."""
    return html.escape(str(value), quote=True)


def render_index(
    meta: FeedMeta,
    entries: Sequence[Entry],
    sources: Sequence[Source],
    states: Mapping[str, SourceState],
    counts: Mapping[str, int],
    generated_at: datetime,
) -> bytes:
    """A small readable page of the latest entries and the sources' status; every value escaped.

    It depends only on stored data (no wall clock), so it is byte-identical when nothing changed.
    """
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(meta.title)}</title>",
        f'<link rel="alternate" type="application/atom+xml" title="{_e(meta.title)} (Atom)" '
        f'href="{FEED_FILE}">',
        f'<link rel="alternate" type="application/feed+json" title="{_e(meta.title)} (JSON Feed)" '
        f'href="{JSON_FEED_FILE}">',
        f"<style>{_PAGE_CSS}</style></head><body>",
        f"<h1>{_e(meta.title)}</h1>",
    ]
    if meta.subtitle:
        out.append(f'<p class="sub">{_e(meta.subtitle)}</p>')
    out.append(
        f'<p class="sub">Subscribe: <a href="{FEED_FILE}">Atom</a> · '
        f'<a href="{JSON_FEED_FILE}">JSON Feed</a> · updated '
        f'<time datetime="{_e(_dt(generated_at))}">{_e(_day(generated_at, True))}</time></p>'
    )
    out.append('<h2>Latest updates</h2><ol id="latest">')
    for entry in entries:
        out.append(_index_entry(entry))
    out.append("</ol>")
    if not entries:
        out.append("<p>Nothing yet: no source has been fetched.</p>")
    out.append(
        '<h2>Sources</h2><table id="sources"><thead><tr><th>Source</th><th>Kind</th>'
        "<th>Status</th><th>Last fetch</th><th>Entries</th></tr></thead><tbody>"
    )
    for s in sources:
        row = _snapshot_source(s, states.get(s.name), counts.get(s.name, 0))
        status = _e(row["status"])
        if row["error"]:
            # Plain words here; the message itself is for `aggregator sources`.
            status = f'<span class="error">{status}: {_e(plain_words(row["error"]))}</span>'
        if row["warnings"]:
            status += (
                '<ul class="warnings">'
                + "".join(f"<li>{_e(w)}</li>" for w in row["warnings"])
                + "</ul>"
            )
        fetched = states.get(s.name)
        when = _day(fetched.last_fetch, True) if fetched and fetched.last_fetch else "never"
        shown = _e(row["title"])
        if row["site_link"]:
            shown = f'<a href="{_e(row["site_link"])}">{shown}</a>'
        if row["title"] != s.name:
            shown += f' <span class="meta">({_e(s.name)})</span>'
        out.append(
            f"<tr><td>{shown}</td><td>{_e(s.kind)}</td><td>{status}</td>"
            f"<td>{_e(when)}</td><td>{row['entries']}</td></tr>"
        )
    out.append("</tbody></table>")
    out.append(f'<p class="meta">aggregator {_e(__version__)}</p></body></html>')
    return ("\n".join(out) + "\n").encode("utf-8")


def _day(value: datetime, with_time: bool = False) -> str:
    fmt = "%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d"
    return value.astimezone(UTC).strftime(fmt)


def _index_entry(entry: Entry) -> str:
    title = _e(entry.title)
    if entry.link and entry.link.startswith(("http://", "https://")):
        title = f'<a href="{_e(entry.link)}">{title}</a>'
    when = entry.published or entry.updated
    cats = "".join(f' <span class="cat">{_e(c)}</span>' for c in entry.categories)
    return (
        f'<li class="entry"><div class="title"><strong>{title}</strong></div>'
        f'<div class="meta"><time datetime="{_e(_dt(when))}">{_e(_day(when))}</time> · '
        f'<span class="source">{_e(entry.source)}</span>{cats}</div>'
        f'<p class="excerpt">{_e(entry.excerpt)}</p></li>'
    )


# The snapshot's record of a source, for other front-ends (`aggregator sources --json`).
snapshot_source = _snapshot_source
