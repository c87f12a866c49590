"""Records passed between the stages of a refresh.

Each stage takes one of these and returns another; no stage reaches into a sibling.
All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, TypeVar

SourceKind = Literal["auto", "feed", "page", "text"]
Outcome = Literal["new", "updated", "unchanged", "error"]

R = TypeVar("R")


def quick_init(cls: type[R]) -> type[R]:
    """Give a frozen slots dataclass an __init__ that stores each field straight into its slot.

    The __init__ that @dataclass writes for a frozen class assigns every field through
    object.__setattr__ by name, which costs more than the rest of making the record. The one
    written here takes the same parameters and defaults and calls each slot's own setter,
    about twice as fast; the instance is as frozen as before (the class's __setattr__ still
    refuses). For records made once per excerpt in the dedup and store loops.
    """
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: quick_init does not call __post_init__")
    names: list[str] = []
    params: list[str] = []
    values: dict[str, object] = {}  # what the generated code refers to: setters, defaults
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not MISSING or not f.init or f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: quick_init takes plain fields only")
        names.append(f.name)
        values[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is MISSING:
            params.append(f.name)
        else:
            values[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    body = "".join(f"        _set_{n}(self, {n})\n" for n in names)
    source = (
        f"def make({', '.join(values)}):\n"
        f"    def __init__(self, {', '.join(params)}):\n{body}"
        "    return __init__\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, {}, namespace)  # as dataclasses itself writes __init__
    init = namespace["make"](*values.values())
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]
    return cls


@dataclass(frozen=True, slots=True)
class SelectRules:
    """CSS selectors that find entries on an HTML page (`[sources.select]`)."""

    entry: str  # one match per entry block
    title: str | None = None  # relative to the block; default: first heading or link text
    link: str | None = None  # relative to the block; its href; default: first <a href>
    date: str | None = None  # relative to the block; a datetime attribute or the text
    excerpt: str | None = None  # relative to the block; default: the block's text
    category: str | None = None  # relative to the block; every match is one category
    next: str | None = None  # on the page: links to further pages, each followed once
    max_pages: int = 3  # pages read at most, the first included


@dataclass(frozen=True, slots=True)
class ExcerptOptions:
    """How excerpts are cut and what stands in for code and formulas (`[excerpt]`)."""

    max_chars: int = 350  # characters kept before "..." is appended
    code_placeholder: str = "[code]"  # replaces a block of code
    formula_placeholder: str = "[formula]"  # replaces MathML, MathJax/KaTeX or display LaTeX
    ellipsis: str = "..."  # appended only when text was cut


@dataclass(frozen=True, slots=True)
class Source:
    """One configured source, as read from the config file."""

    name: str  # unique name, used in provenance and messages
    url: str  # http(s) URL, or an absolute local file path
    kind: SourceKind = "auto"  # how the body is read; auto sniffs it
    category: str | None = None  # added to every entry of this source
    select: SelectRules | None = None  # for pages; None means "auto" discovery only
    header_lines: tuple[str, ...] = ("INCOMING TRANSMISSION", "LATEST UPDATES")  # text: skipped
    interval_seconds: int = 3600  # how often the source is due
    allow_duplicate_links: bool = False  # the site reuses one link for many items
    max_entries: int = 500  # entries read from one fetch at most
    robots: bool | None = None  # honour robots.txt; None: only for kind = "page"

    @property
    def honours_robots(self) -> bool:
        return self.robots if self.robots is not None else self.kind == "page"

    @property
    def is_remote(self) -> bool:
        return self.url.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the store remembers about a source between refreshes."""

    name: str  # the source's name
    url: str | None = None  # the configured URL this state belongs to; a new URL starts afresh
    etag: str | None = None  # ETag of the last 200, verbatim
    last_modified: str | None = None  # Last-Modified of the last 200, verbatim
    body_hash: str | None = None  # hash of the last body parsed
    effective_url: str | None = None  # where the source now lives after permanent redirects
    last_status: str | None = None  # "ok", "not-modified", "error", "gone"
    last_fetch: datetime | None = None  # when it was last fetched, success or not
    last_success: datetime | None = None  # when it last fetched without error
    error: str | None = None  # the last error message, None after a success
    error_streak: int = 0  # consecutive failed refreshes
    next_due: datetime | None = None  # not fetched again before this time
    redirect_url: str | None = None  # target of the last permanent redirect
    redirect_streak: int = 0  # how many fetches in a row redirected permanently there
    ttl_seconds: int | None = None  # the feed's own refresh hint from its last parse


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What came back for one request. A 304 is a normal result."""

    url: str  # the URL asked for
    final_url: str  # after redirects; base for relative links
    status: int  # HTTP status; 200 for local files
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names
    body: bytes = b""  # raw bytes, never decoded here
    permanent_redirect: str | None = None  # the URL a 301/308 chain settled on, if any

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass(frozen=True, slots=True)
class RawItem:
    """An entry as a parser found it, close to the source."""

    guid: str | None  # the source's own id for the entry, if it has one
    title: str | None  # may still hold markup or entities
    link: str | None  # absolute URL as found (resolved against the document URL)
    content: str  # summary or content: HTML when content_is_html, else plain text
    content_is_html: bool = True  # whether `content` is HTML
    published: datetime | None = None  # as the source states it, aware UTC
    updated: datetime | None = None  # as the source states it, aware UTC
    authors: tuple[str, ...] = ()  # display names
    categories: tuple[str, ...] = ()  # tags/labels from the source
    position: int = 0  # order in the document: 0 is the top (newest)


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """Everything a parser read from one body."""

    kind: SourceKind  # what the body turned out to be (feed, page or text)
    items: tuple[RawItem, ...]  # in document order
    title: str | None = None  # the document's own title
    link: str | None = None  # the document's home page
    feed_url: str | None = None  # an HTML page's advertised feed, to be read instead
    ttl_seconds: int | None = None  # the feed's own refresh hint (<ttl>, sy:updatePeriod)
    warnings: tuple[str, ...] = ()  # survivable problems (e.g. a tolerated bozo error)


@dataclass(frozen=True, slots=True)
class Excerpt:
    """The normalized record of one entry of one source."""

    id: str  # candidate id minted from the source's identity of the entry
    source: str  # name of the source it came from
    key: str  # identity within the source: "guid:…", "link:…" or "text:…"
    guid: str | None  # the source's guid, verbatim
    title: str  # plain text, never empty
    link: str | None  # clean absolute http(s) link (no tracking, no fragment), or None
    published: datetime | None  # trusted source date, aware UTC
    updated: datetime | None  # trusted source update date, aware UTC
    first_seen: datetime  # when this refresh saw it
    authors: tuple[str, ...]  # display names
    categories: tuple[str, ...]  # source categories plus the configured one
    excerpt: str  # plain text, cut to max_chars with "..." when cut
    truncated: bool  # whether the text (here or at the source) is cut short
    fingerprint: str  # hash of the normalized text, for exact text matching
    content_hash: str  # hash of every displayed field, to spot updates
    position: int = 0  # order in the document: 0 is the top (newest)
    text: str = ""  # normalized full text (folded), used by dedup; not displayed
    link_key: str | None = None  # identity form of the link (https, no trailing slash)

    @property
    def sort_date(self) -> datetime:
        return self.published or self.updated or self.first_seen


@dataclass(frozen=True, slots=True)
class Entry:
    """One merged post as emitted: a cluster of excerpts with a stable id."""

    id: str  # minted at first sight, never changes
    title: str  # from the representative copy
    link: str | None  # canonical link of the representative copy
    published: datetime | None  # earliest trusted published date of the copies
    updated: datetime  # latest change to the entry
    first_seen: datetime  # earliest first_seen of the copies
    excerpt: str  # best excerpt: the longest untruncated one
    authors: tuple[str, ...]  # union, in order of appearance
    categories: tuple[str, ...]  # union, in order of appearance
    source: str  # the representative copy's source
    sources: tuple[Provenance, ...]  # every place it was seen
    duplicates: tuple[Duplicate, ...] = ()  # why each other copy was merged


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a copy of an entry was seen."""

    source: str  # source name
    link: str | None  # the copy's link
    first_seen: datetime  # when that copy was first seen


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Why a copy was merged into an entry."""

    source: str  # the copy's source
    key: str  # the copy's identity within its source
    rule: str  # guid | link | text | prefix | similar
    score: float | None = None  # similarity, for rule "similar"


@dataclass(frozen=True, slots=True)
class SourceResult:
    """What one refresh did for one source."""

    source: str  # source name
    outcome: Outcome  # new, updated, unchanged or error
    new: int = 0  # entries never seen before
    joined: int = 0  # new copies of posts already known (another source has them)
    updated: int = 0  # known entries whose content changed
    unchanged: int = 0  # known entries seen again as they were
    error: str | None = None  # message when outcome is "error"
    status: int | None = None  # HTTP status, when there was a response
    duration: float = 0.0  # seconds spent on the source
    warnings: tuple[str, ...] = ()  # survivable problems


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """What one refresh did, source by source."""

    started: datetime  # when the refresh began
    finished: datetime  # when the outputs were written
    results: tuple[SourceResult, ...]  # one per source refreshed
    feed_written: bool  # whether feed.atom changed on disk
    snapshot_written: bool  # whether snapshot.json changed on disk

    @property
    def failed(self) -> tuple[SourceResult, ...]:
        return tuple(r for r in self.results if r.outcome == "error")
