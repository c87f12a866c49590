"""Write the merged Atom feed and the JSON snapshot, atomically and only when bytes change.

Every value that reaches an output is plain text from the normalizer (feedgen escapes it), so
no source markup is ever copied into a feed. Output that did not change is byte-identical: the
feed's `updated` is its newest entry's, never "now".
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator import __version__
from aggregator.errors import EmitError
from aggregator.models import Entry, Source, SourceState

FEED_FILE = "feed.atom"
SNAPSHOT_FILE = "snapshot.json"
SNAPSHOT_VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ATOM_NS = "http://www.w3.org/2005/Atom"


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
    return fg.atom_str(pretty=True)


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
        src = etree.SubElement(entry, f"{{{_ATOM_NS}}}source")
        if self.url:
            etree.SubElement(src, f"{{{_ATOM_NS}}}id").text = self.url
        etree.SubElement(src, f"{{{_ATOM_NS}}}title").text = self.name
        if self.url:
            etree.SubElement(src, f"{{{_ATOM_NS}}}link", href=self.url)
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
