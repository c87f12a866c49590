"""Write the merged Atom feed, JSON Feed, HTML page and JSON snapshot, atomically and only
when bytes change.

Every value that reaches an output is plain text from the normalizer (escaped where it is
written), except the source HTML of `[output] content = "full"`, which is sanitized first
(aggregator/sanitize.py). Every value also passes one cleaning on its way out (`scrub`): no
control character reaches an output, whatever a source sent. Output that did not change is
byte-identical: the feed's `updated` is its newest entry's, never "now".

The Atom feed is valid for the W3C Feed Validator as well as RFC 4287: a `rel="self"` link;
atom:author on every entry (its own, else on its atom:source, which names the source feed's
own author or, when it gives none, the source itself), unless `[feed] author` covers them;
author names without markup or e-mail addresses (a valid address goes to atom:email); an
atom:source with the source feed's id, title, updated, links and author.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from aggregator import __version__
from aggregator.errors import EmitError
from aggregator.models import Entry, Source, SourceState, display_title
from aggregator.problems import plain_words

if TYPE_CHECKING:
    from feedgen.entry import FeedEntry
    from feedgen.feed import FeedGenerator
    from lxml import etree

FEED_FILE = "feed.atom"
SNAPSHOT_FILE = "snapshot.json"
SNAPSHOT_VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ContentMode = Literal["excerpt", "full"]


@dataclass(frozen=True, slots=True)
class FeedMeta:
    """What the merged feed says about itself."""

    title: str  # feed title
    link: str  # the site's public URL
    id: str  # the feed's Atom id
    subtitle: str | None = None  # optional description
    author: str | None = None  # optional author name
    self_url: str | None = None  # public URL of feed.atom
    content: ContentMode = "excerpt"  # excerpt: plain text; full: the source's sanitized HTML
    hub: str | None = None  # WebSub hub (Atom rel="hub", JSON Feed hubs)
    links: tuple[tuple[str, str], ...] = ()  # more (rel, href): RFC 5005 archive links
    archive: bool = False  # an RFC 5005 archive document (fh:archive)
    json_url: str | None = None  # public URL of this document's JSON Feed (feed_url)
    next_url: str | None = None  # JSON Feed next_url: the next older document


def public_url(source: Source) -> str | None:
    """The address a reader may follow for a source; a local file path is never published."""
    return source.url if source.is_remote else None


# --- one cleaning on the way out ---------------------------------------------------------------

# C0 and C1 control characters and DEL; tab, line feed and carriage return are whitespace.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_WHITESPACE_CONTROLS = re.compile("[\t\n\r]")
_SURROGATES = re.compile("[\ud800-\udfff]")
# What clean_field changes in a multi-line text (HTML): a fast check before any change.
_UNCLEAN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")
_T = TypeVar("_T")


def clean_field(text: str, *, multiline: bool = False) -> str:
    """`text` without control characters (a tab or line break becomes a space, unless
    `multiline`), and with a lone surrogate as U+FFFD: what every output may carry."""
    if text.isprintable() or (multiline and _UNCLEAN.search(text) is None):
        return text
    text = _SURROGATES.sub("\ufffd", _CONTROLS.sub("", text))
    return text if multiline else _WHITESPACE_CONTROLS.sub(" ", text)


def scrub(value: _T) -> _T:
    """`value` (a record, or a tuple, list or mapping of them) with every string cleaned by
    clean_field; the HTML of an entry keeps its line breaks. What needs no cleaning is
    returned as it is, not copied."""
    return _scrub(value, False)  # type: ignore[no-any-return]


def _scrub(value: Any, multiline: bool) -> Any:
    if isinstance(value, str):
        return clean_field(value, multiline=multiline)
    if isinstance(value, tuple | list):
        cleaned = [_scrub(v, multiline) for v in value]
        if all(new is old for new, old in zip(cleaned, value, strict=True)):
            return value
        return type(value)(cleaned)
    if isinstance(value, Mapping):
        items = {k: _scrub(v, multiline) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    if isinstance(value, Entry) and _clean_entry(value):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _field_names(type(value))
        values = [getattr(value, name) for name in names]
        if all(type(v) in _PLAIN or (type(v) is str and v.isprintable()) for v in values):
            return value  # a flat record with nothing to clean: the common case
        changes = {}
        for name in names:
            old = getattr(value, name)
            new = _scrub(old, name == "html")
            if new is not old:
                changes[name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value


def _clean_entry(e: Entry) -> bool:
    """Whether an entry needs no cleaning, checked in one pass over its text (the common
    case, and the bulk of what is scrubbed). Its HTML is cleaned where it is used
    (_full_content): most feeds never publish it."""
    text = "".join(
        (
            e.id,
            e.title,
            e.link or "",
            e.excerpt,
            e.source,
            *e.authors,
            *e.categories,
            *(p.source + (p.link or "") for p in e.sources),
            *(d.source + d.key + d.rule for d in e.duplicates),
        )
    )
    return text.isprintable()


# Values that hold no text.
_PLAIN = frozenset({type(None), bool, int, float, datetime})


@cache
def _field_names(record: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(record))


# --- author names ------------------------------------------------------------------------------

# Something shaped like an address, and the validator's own rule for a valid one (addr-spec
# with a dotted domain): only a valid one is written as atom:email.
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"@]+@[^\s<>()\[\],;:\"@]+")
_VALID_EMAIL = re.compile(
    r"^[A-Z0-9_\-+.'!#$%&*/=?^`{|}~]+@(?:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.|(?:[A-Z0-9\-]+\.)+)"
    r"[A-Z0-9][-A-Z0-9]*$",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"<[/!a-zA-Z]|&(?:#\w+|[a-zA-Z]+);")
_WRAPPERS = " \t()<>[]\"',;:-"


def _plain(text: str) -> str:
    """`text` without markup: a source's title or name may be HTML (Atom type="html")."""
    if not _MARKUP.search(text):
        return text
    from aggregator.textutil import html_to_text

    return html_to_text(text, code_placeholder="", formula_placeholder="")


@lru_cache(maxsize=4096)
def person(raw: str) -> tuple[str, str | None] | None:
    """A display name and a valid e-mail address (or None) from an author as a source gave
    it: "Name", "email (Name)", "Name <email>", "Name email", "email", with or without
    markup. None when nothing nameable is left."""
    email = None
    found = _ADDRESS.search(raw)
    if found:
        address = found.group(0)
        email = address if _VALID_EMAIL.match(address) else None
        raw = raw[: found.start()] + raw[found.end() :]
        raw = raw.replace("()", " ").replace("<>", " ").replace("[]", " ")
    name = " ".join(_plain(raw).split()).strip(_WRAPPERS)
    name = _ADDRESS.sub("", name).strip(_WRAPPERS)  # a second address in the text
    if not name and found:
        name = found.group(0).split("@", 1)[0]  # only an address: its local part
    return (name, email) if name else None


def people(raws: Sequence[str]) -> list[tuple[str, str | None]]:
    """person() of each author, without repeats of a name."""
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for raw in raws:
        found = person(raw)
        if found and found[0].casefold() not in seen:
            seen.add(found[0].casefold())
            out.append(found)
    return out


# --- the source feed an entry came from --------------------------------------------------------


# An absolute IRI, as atom:id must be: a scheme, then no white space.
_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")


@dataclass(frozen=True, slots=True)
class _Origin:
    """What an entry's atom:source (and JSON Feed's fallback author) says, for one source."""

    id: str
    title: str
    self_url: str | None
    link: str | None
    author: tuple[str, str | None]
    updated: datetime | None


def _origin(meta: FeedMeta, name: str, source: Source | None, state: SourceState | None) -> _Origin:
    """The source feed as it describes itself at its last parse (its id, title, site link,
    author and date, where it gave them; a configured title first); else an id minted from
    the merged feed's id and the source's name, the source's name as title and author. Its
    self link is its address, unless it is a local file."""
    url = public_url(source) if source else None
    title = display_title(source, state) if source else (state and state.feed_title) or name
    title = " ".join(_plain(title).split()) or name
    author = person(state.feed_author) if state and state.feed_author else None
    own_id = state.feed_id if state and state.feed_id and _IRI.match(state.feed_id) else None
    link = state.site_link if state else None
    return _Origin(
        id=own_id or url or uuid.uuid5(uuid.NAMESPACE_URL, f"{meta.id}#source={name}").urn,
        title=title,
        self_url=url,
        link=link if link != url else None,
        author=author or (title, None),
        updated=state.feed_updated if state else None,
    )


# --- Atom --------------------------------------------------------------------------------------


def render_atom(
    meta: FeedMeta,
    entries: Sequence[Entry],
    sources: Mapping[str, Source],
    states: Mapping[str, SourceState] | None = None,
    *,
    empty_updated: datetime | None = None,
) -> bytes:
    """The Atom 1.0 document for `entries` (already newest first). `states` holds what each
    source's own document said about itself at its last parse; `empty_updated` dates a feed
    without entries (default: now)."""
    # Imported here: the server imports this module for its file names and never renders Atom.
    from feedgen.feed import FeedGenerator

    meta, entries, states = scrub(meta), scrub(entries), scrub(dict(states or {}))
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
        for name, email in people([meta.author]):
            fg.author(name=name, email=email)
    if meta.archive:
        fg.register_extension("archive", _ArchiveExtension, atom=True, rss=False)
    fg.generator("aggregator", version=__version__)
    fg.updated(max((e.updated for e in entries), default=empty_updated or datetime.now(UTC)))
    origins: dict[str, _Origin] = {}
    newest: dict[str, datetime] = {}  # each source's latest entry here
    for entry in entries:
        newest[entry.source] = max(entry.updated, newest.get(entry.source, entry.updated))
    for entry in entries:
        if entry.source not in origins:
            origins[entry.source] = _origin(
                meta, entry.source, sources.get(entry.source), states.get(entry.source)
            )
        _add_entry(fg, entry, origins[entry.source], meta.content, newest[entry.source])
    atom: bytes = fg.atom_str(pretty=True)
    return atom


def _add_entry(
    fg: FeedGenerator, entry: Entry, origin: _Origin, content: ContentMode, newest: datetime
) -> None:
    fe = fg.add_entry(order="append")
    fe.id(entry.id)
    fe.title(entry.title)
    fe.updated(entry.updated)
    if entry.published:
        fe.published(entry.published)
    if entry.link:
        # feedgen writes only the href of an entry's links (FeedEntry.atom_entry reuses the
        # name `link` for the element it creates, so rel, type, hreflang, title and length
        # are read from the element instead of the link given, and are lost): a link without
        # rel is the alternate, so the one alternate is left to feedgen, and every other
        # link is written by _EntryExtension.
        fe.link(href=entry.link)
    text = entry.excerpt or entry.title
    full = _full_content(entry) if content == "full" else None
    if full:
        fe.content(full, type="html")
        fe.summary(text, type="text")
    elif entry.link:
        fe.summary(text, type="text")
    else:
        # RFC 4287 4.1.1: an entry without an alternate link must carry content.
        fe.content(text, type="text")
    for name, email in people(entry.authors):
        fe.author(name=name, email=email)
    for cat in entry.categories:
        fe.category(term=cat)
    via = sorted({p.link for p in entry.sources if p.link and p.link != entry.link})
    _extend(fe, via, origin, _source_updated(origin.updated, entry.updated, newest))


FH_NS = "http://purl.org/syndication/history/1.0"


class _ArchiveExtension:
    """Adds `<fh:archive/>` (RFC 5005 section 4): the document is an archive page."""

    def extend_ns(self) -> dict[str, str]:
        return {"fh": FH_NS}

    def extend_atom(self, feed: etree._Element) -> etree._Element:
        from lxml import etree

        etree.SubElement(feed, f"{{{FH_NS}}}archive")
        return feed


def _full_content(entry: Entry) -> str | None:
    """The entry's source HTML, sanitized; None when there is none, or when it holds no
    markup (then the excerpt says all of it, and it is not written twice)."""
    if not entry.html or "<" not in entry.html:
        return None
    return _sanitized(entry.html, entry.link) or None


@lru_cache(maxsize=512)
def _sanitized(html: str, base: str | None) -> str:
    """Sanitized and cleaned HTML; remembered, as the Atom feed and the JSON Feed publish
    the same entries, and a scheduler writes them again after every burst of refreshes."""
    from aggregator.sanitize import sanitize_html

    return clean_field(sanitize_html(html, base), multiline=True)


def _source_updated(stated: datetime | None, entry: datetime, newest: datetime) -> datetime:
    """atom:source's updated: the date the source feed states, kept between the entry's own
    date (the source changed at least then) and its newest entry's in this feed. Many feeds
    state the time they were generated; unclamped, the merged feed would change at every
    fetch of them though no entry did."""
    return min(max(stated, entry), newest) if stated else entry


def _extend(fe: FeedEntry, via: list[str], origin: _Origin, updated: datetime) -> None:
    fe.register_extension("aggregator_entry", _EntryExtension, atom=True, rss=False)
    fe.aggregator_entry.set(via, origin, updated)


class _EntryExtension:
    """Writes what feedgen cannot: the `rel="via"` links (other places the post was seen) and
    `<source>` (RFC 4287 4.2.11), the feed the entry was taken from."""

    def __init__(self) -> None:
        self.via: list[str] = []
        self.origin: _Origin | None = None
        self.updated = EPOCH

    def set(self, via: list[str], origin: _Origin, updated: datetime) -> None:
        self.via, self.origin, self.updated = via, origin, updated

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, entry: etree._Element) -> etree._Element:
        from lxml import etree

        # Like feedgen's own elements, these take the feed's default (Atom) namespace.
        for href in self.via:
            etree.SubElement(entry, "link", rel="via", href=href)
        origin = self.origin
        if origin is None:
            return entry
        src = etree.SubElement(entry, "source")
        etree.SubElement(src, "id").text = origin.id
        etree.SubElement(src, "title").text = origin.title
        etree.SubElement(src, "updated").text = _dt(self.updated)
        if origin.self_url:
            etree.SubElement(src, "link", rel="self", href=origin.self_url)
        if origin.link:
            etree.SubElement(src, "link", rel="alternate", type="text/html", href=origin.link)
        author = etree.SubElement(src, "author")
        name, email = origin.author
        etree.SubElement(author, "name").text = name
        if email:
            etree.SubElement(author, "email").text = email
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
        "authors": [name for name, _ in people(entry.authors)],
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
    meta, entries, sources, states = scrub(meta), scrub(entries), scrub(sources), scrub(states)
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


# --- JSON Feed 1.1 and the HTML page (same entries, same write path) ---------------------------

JSON_FEED_FILE = "feed.json"
INDEX_FILE = "index.html"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


def render_json_feed(
    meta: FeedMeta,
    entries: Sequence[Entry],
    sources: Mapping[str, Source] | None = None,
    states: Mapping[str, SourceState] | None = None,
) -> bytes:
    """The JSON Feed 1.1 document for `entries` (already newest first): the same entries,
    authors and content as the Atom feed."""
    meta, entries, states = scrub(meta), scrub(entries), scrub(dict(states or {}))
    doc: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": meta.title,
        "home_page_url": meta.link,
    }
    if meta.json_url:
        doc["feed_url"] = meta.json_url
    elif meta.self_url:
        doc["feed_url"] = json_feed_url(meta.self_url)
    if meta.next_url:
        doc["next_url"] = meta.next_url
    if meta.subtitle:
        doc["description"] = meta.subtitle
    if meta.author:
        doc["authors"] = [{"name": name} for name, _ in people([meta.author])]
    if meta.hub:
        doc["hubs"] = [{"type": "WebSub", "url": meta.hub}]
    origins: dict[str, _Origin] = {}
    items = []
    for entry in entries:
        if entry.source not in origins:
            source = (sources or {}).get(entry.source)
            origins[entry.source] = _origin(meta, entry.source, source, states.get(entry.source))
        items.append(_json_feed_item(entry, origins[entry.source], meta.content))
    doc["items"] = items
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def json_feed_url(self_url: str) -> str:
    """feed.json's address: beside feed.atom's."""
    return f"{self_url.rsplit('/', 1)[0]}/{JSON_FEED_FILE}"


def _json_feed_item(entry: Entry, origin: _Origin, content: ContentMode) -> dict[str, Any]:
    item: dict[str, Any] = {"id": entry.id}
    if entry.link:
        item["url"] = entry.link
    item["title"] = entry.title
    full = _full_content(entry) if content == "full" else None
    if full:
        item["content_html"] = full
        item["summary"] = entry.excerpt or entry.title
    else:
        item["content_text"] = entry.excerpt or entry.title
    if entry.published:
        item["date_published"] = _dt(entry.published)
    item["date_modified"] = _dt(entry.updated)
    # The entry's own authors, else its source feed's (as atom:source says in the Atom feed).
    named = people(entry.authors) or [origin.author]
    item["authors"] = [{"name": name} for name, _ in named]
    if entry.categories:
        item["tags"] = list(entry.categories)
    item["_aggregator"] = {
        "source": entry.source,
        "sources": sorted({p.source for p in entry.sources}),
    }
    return item


_PAGE_CSS = """\
:root{color-scheme:light dark;--fg:#222;--muted:#666;--bg:#fff;--line:#ddd;--tag:#eef;
--link:#0645ad;--err:#a00;--warn:#850}
@media (prefers-color-scheme:dark){:root{--fg:#ddd;--muted:#9a9a9a;--bg:#131417;--line:#34363b;
--tag:#2a2f45;--link:#8ab4f8;--err:#ff8a80;--warn:#e0a040}}
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
.warnings{margin:.2rem 0 0;padding-left:1rem;color:var(--warn);font-size:.85rem}
@media (max-width:40rem){#sources th:nth-child(2),#sources td:nth-child(2){display:none}}"""
# Categories offered as filters on one page, the most used first.
MAX_FILTERS = 40


def _e(value: object) -> str:
    """Escape for HTML text and double-quoted attributes."""
    return html.escape(str(value), quote=True)


def site_url(source: Source | None, state: SourceState | None = None) -> str | None:
    """The site of a source, for a link on its name: the home page its feed names, else the
    origin of its public address."""
    if state is not None and state.site_link:
        return state.site_link
    url = public_url(source) if source else None
    if not url:
        return None
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0].split('#', 1)[0]}/"


def _sites(
    sources: Mapping[str, Source], states: Mapping[str, SourceState] | None
) -> dict[str, str | None]:
    return {name: site_url(s, (states or {}).get(name)) for name, s in sources.items()}


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
    entries: Sequence[Entry], sites: Mapping[str, str | None], numbers: Mapping[str, int]
) -> list[str]:
    out = ['<ol id="latest">']
    out.extend(_index_entry(entry, sites, numbers) for entry in entries)
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
    meta, entries, sources, states = scrub(meta), scrub(entries), scrub(sources), scrub(states)
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
    out.extend(_entry_list(entries, _sites(by_name, states), numbers))
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
    return out


def render_history(
    meta: FeedMeta,
    entries: Sequence[Entry],
    sources: Mapping[str, Source],
    page: int,
    pages: int,
    states: Mapping[str, SourceState] | None = None,
) -> bytes:
    """Archive page `page` of `pages` as an HTML page (archive/feed/<page>.html), with links
    to the newer and older pages. Like the archive documents, a sealed page never changes."""
    meta, entries = scrub(meta), scrub(entries)
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
    out.extend(_entry_list(entries, _sites(sources, states), numbers))
    if not entries:
        out.append("<p>Nothing on this page yet.</p>")
    out.append(nav)
    out.append(f'<p class="meta">aggregator {_e(__version__)}</p></body></html>')
    return ("\n".join(out) + "\n").encode("utf-8")


def _day(value: datetime, with_time: bool = False) -> str:
    fmt = "%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d"
    return value.astimezone(UTC).strftime(fmt)


def _source_name(name: str, sites: Mapping[str, str | None]) -> str:
    site = sites.get(name)
    return f'<a href="{_e(site)}">{_e(name)}</a>' if site else _e(name)


def _index_entry(entry: Entry, sites: Mapping[str, str | None], numbers: Mapping[str, int]) -> str:
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
        + ", ".join(_source_name(name, sites) for name in others)
        + "</span>"
        if others
        else ""
    )
    return (
        f'<li class="entry{classes}"><div class="title"><strong>{title}</strong></div>'
        f'<div class="meta"><time datetime="{_e(_dt(when))}">{_e(_day(when))}</time> · '
        f'<span class="source">{_source_name(entry.source, sites)}</span>{also}{cats}</div>'
        f'<p class="excerpt">{_e(entry.excerpt)}</p></li>'
    )


# The snapshot's record of a source, for other front-ends (`aggregator sources --json`).
snapshot_source = _snapshot_source
