"""Records passed between the stages of a refresh.

Each stage takes one of these and returns another; no stage reaches into a sibling.
All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

SourceKind = Literal["auto", "feed", "page", "text"]
Outcome = Literal["new", "updated", "unchanged", "error"]


@dataclass(frozen=True, slots=True)
class SelectRules:
    """CSS selectors that find entries on an HTML page (`[sources.select]`).

    A rule left out is found by auto mode (parse/autopage.py); a rule given always wins.
    """

    entry: str | None = None  # one match per entry block; None: auto mode finds the post list
    title: str | None = None  # relative to the block; default: first heading or link text
    link: str | None = None  # relative to the block; its href; default: first <a href>
    date: str | None = None  # relative to the block; a datetime attribute or the text
    excerpt: str | None = None  # relative to the block; default: the block's text
    category: str | None = None  # relative to the block; every match is one category
    next: str | None = None  # on the page: links to further pages, each followed once
    max_pages: int = 3  # pages read at most, the first included

    @property
    def complete(self) -> bool:
        """Whether every selector is given, so that auto mode has nothing to add."""
        return all(getattr(self, name) for name in SELECTOR_FIELDS)


SELECTOR_FIELDS = ("entry", "title", "link", "date", "excerpt", "category", "next")


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
    enabled: bool = True  # false: kept in the config and the store, never fetched
    title: str | None = None  # display name; None: the feed's own title
    include: tuple[str, ...] = ()  # regexes: when any, only items matching one are stored
    exclude: tuple[str, ...] = ()  # regexes: items matching one are not stored
    # extra request headers, values as written ("${TOKEN}" is read from the environment when
    # the request is made, so that the secret itself is never held in the config records)
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def honours_robots(self) -> bool:
        return self.robots if self.robots is not None else self.kind == "page"

    @property
    def selectors(self) -> str | None:
        """How entries are found when the body is an HTML page: "config" (every selector
        given), "auto" (auto mode finds them) or "config+auto" (auto mode completes the given
        ones); None for feeds and text captures."""
        if self.kind in ("feed", "text"):
            return None
        if self.select is None:
            return "auto"
        return "config" if self.select.complete else "config+auto"

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
    feed_title: str | None = None  # the source's own title, from its last parse
    site_link: str | None = None  # the source's home page (http or https), from its last parse
    page_entry: str | None = None  # the entry selector auto mode settled on at the last read
    feed_id: str | None = None  # the source's own id (Atom id), from its last parse
    feed_author: str | None = None  # the source's own author as given, from its last parse
    feed_updated: datetime | None = None  # when the source says it last changed (last parse)
    # survivable problems of the last body read (tolerated malformed XML, a truncated feed,
    # repeated guids, a later page that failed...); replaced by each fetch that reads a body
    warnings: tuple[str, ...] = ()


def display_title(source: Source, state: SourceState | None) -> str:
    """What a source is called where people read: its configured title, else the title its
    last parse found, else its name."""
    return source.title or (state.feed_title if state else None) or source.name


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
    # An HTML page's rules when auto mode found or completed them, and how it found the list
    # ("structure", "microdata", "h-entry", "json-ld", or "given" for the config's entry).
    auto_select: SelectRules | None = None
    auto_method: str | None = None
    feed_id: str | None = None  # the feed's own id (Atom id), verbatim
    author: str | None = None  # the feed's own author (Atom author, RSS managingEditor), as given
    updated: datetime | None = None  # when the feed says it last changed, aware UTC


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
    html: str | None = None  # the source's HTML content, unsanitized; None for plain text
    # host of the source's own site (its document's home link, else the source URL's host;
    # urls.site_host form): a copy whose link is on it is the original's own copy
    site_host: str | None = None

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
    html: str | None = None  # the representative copy's HTML content, unsanitized, if any


@dataclass(frozen=True, slots=True)
class EntryMatch:
    """Which entries an output holds: every entry, or those its filter selects."""

    categories: frozenset[str] = frozenset()  # casefolded; an entry with any of them (or all)
    sources: frozenset[str] = frozenset()  # an entry with a copy from any of these (or all)

    @classmethod
    def of(cls, categories: Iterable[str] = (), sources: Iterable[str] = ()) -> EntryMatch:
        return cls(frozenset(c.casefold() for c in categories), frozenset(sources))

    def selects(self, entry: Entry) -> bool:
        """Whether `entry` belongs to the output (the store's queries answer the same)."""
        if self.categories and not any(c.casefold() in self.categories for c in entry.categories):
            return False
        return not self.sources or any(p.source in self.sources for p in entry.sources)


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
    excluded: int = 0  # items its include / exclude filters kept out of the store


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """What one refresh did, source by source."""

    started: datetime  # when the refresh began
    finished: datetime  # when the outputs were written
    results: tuple[SourceResult, ...]  # one per source refreshed
    feed_written: bool  # whether feed.atom changed on disk
    snapshot_written: bool  # whether snapshot.json changed on disk
    removed: tuple[str, ...] = ()  # sources no longer configured, whose copies were removed
    interrupted: bool = False  # stopped early: the sources not collected were left for later

    @property
    def failed(self) -> tuple[SourceResult, ...]:
        return tuple(r for r in self.results if r.outcome == "error")


# --- dedup and the store -----------------------------------------------------------------------
# The store finds candidates for a batch (CandidateQuery -> Candidates, StoredEntry), dedup
# decides (Decision), the store persists the decision.


@dataclass(frozen=True, slots=True)
class StoredCopy:
    """What dedup needs to know about a copy already in the store."""

    rowid: int  # the store's number for the copy, increasing with age; < 0: a copy of the batch
    source: str  # the source it came from
    key: str  # its identity within that source
    entry_id: str  # the merged entry it belongs to
    content_hash: str  # to tell an update from a repeat
    link: str | None  # identity form of its link
    truncated: bool  # whether its text is cut short
    text: str  # folded text, for prefix and similarity rules
    title: str = ""  # its title as displayed, for the title checks of the text rules


@dataclass(frozen=True, slots=True)
class CandidateQuery:
    """What one batch asks the store for; each field is looked up in one go."""

    keys: frozenset[tuple[str, str]] = frozenset()  # (source, key) of copies stored under them
    links: frozenset[str] = frozenset()  # copies with one of these identity links
    fingerprints: frozenset[str] = frozenset()  # copies with one of these fingerprints
    hashes: frozenset[int] = frozenset()  # copies with one of these candidate-index hashes
    limit: int = 200  # copies per hash at most, the newest


@dataclass(frozen=True, slots=True)
class Candidates:
    """Everything stored that one batch of excerpts could match."""

    by_key: Mapping[tuple[str, str], StoredCopy]  # (source, key) -> its stored copy
    by_link: Mapping[str, Sequence[StoredCopy]]  # copies per link, oldest first
    by_fingerprint: Mapping[str, Sequence[StoredCopy]]  # copies per fingerprint, oldest first
    by_hash: Mapping[int, Sequence[StoredCopy]]  # copies per hash (the newest), in any order


@dataclass(frozen=True, slots=True)
class CopyRank:
    """What choosing an entry's representative copy reads of one copy."""

    source: str  # the copy's source
    key: str  # its identity within that source
    truncated: bool  # whether its text is cut short
    length: int  # characters of its excerpt
    first_seen: datetime  # when it was first seen
    rowid: int  # the store's number for it, increasing with age
    link: str | None = None  # its link, as displayed
    site_host: str | None = None  # host of its source's own site (Excerpt.site_host)
    published: datetime | None = None  # its trusted published date


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A stored merged entry, as dedup sees it when a batch touches it."""

    id: str  # its id
    first_seen: datetime  # its earliest copy's first sight: the older entry's id survives a merge
    seq: int  # the store's creation order, for entries first seen at the same moment
    copies: tuple[CopyRank, ...]  # every copy, oldest first


@dataclass(frozen=True, slots=True)
class Placement:
    """Where dedup put one excerpt of a batch."""

    excerpt: Excerpt  # the normalized record
    entry_id: str  # the entry it belongs to once the batch's merges are done
    rule: str  # how it joined: new | same | guid | link | text | prefix | similar
    score: float | None = None  # similarity, for rules "similar" and "prefix"
    existing: StoredCopy | None = None  # the stored copy of this source it is, or rewrites
    sketch: tuple[int, ...] = ()  # candidate-index hashes to store; () when none change

    @property
    def rewrites(self) -> bool:
        """Whether it changes a stored copy (new content, or the same copy under a new key)."""
        old = self.existing
        return old is not None and (
            old.content_hash != self.excerpt.content_hash or old.key != self.excerpt.key
        )


@dataclass(frozen=True, slots=True)
class Merge:
    """A stored entry that a copy of the batch showed to be the same post as another."""

    entry_id: str  # the entry folded away
    into: str  # the entry it is folded into, whose id survives (the older one)
    rule: str  # how the linking copy matched it: link | text | prefix | similar
    score: float | None = None  # similarity, for rules "similar" and "prefix"


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything dedup decided for one batch: what the store writes, and what to report."""

    placements: tuple[Placement, ...]  # one per distinct copy, in batch order
    merges: tuple[Merge, ...] = ()  # stored entries folded into others
    # entry id -> (source, key) of the copy that represents it, for every entry the batch
    # creates or changes
    representatives: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # stored entry id -> the id it takes: an entry whose copies were all first seen at one
    # moment is named by its representative copy (placements, merges and representatives name
    # it by its stored id; the store renames it after writing them)
    renames: Mapping[str, str] = field(default_factory=dict)
    new: int = 0  # copies of posts seen for the first time
    joined: int = 0  # new copies of posts already known
    updated: int = 0  # stored copies whose content or key changed
    unchanged: int = 0  # stored copies seen again as they were
    repeated_in_batch: int = 0  # items that repeated another item of the same fetch
    repeated_guids: int = 0  # distinct items that shared one guid, told apart by link/text
    changed_keys: int = 0  # known copies that came back under a new guid, link or text
    warnings: tuple[str, ...] = ()  # what to report for the source


@dataclass(frozen=True, slots=True)
class Removal:
    """What removing one source's copies did to the store."""

    source: str  # the source removed
    copies: int  # its copies deleted
    entries_removed: int  # entries that no other source had, deleted with them
    # entries another source also has: they stay, and need their representative chosen again
    entries_kept: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterCopy:
    """One copy of a merged entry, and why it was merged, for `aggregator dupes`."""

    source: str  # the copy's source
    key: str  # its identity within that source
    rule: str  # new (the first copy) | guid | link | text | prefix | similar
    score: float | None  # similarity, for rules "similar" and "prefix"
    title: str  # its title
    link: str | None  # its link
    first_seen: datetime  # when it was first seen


@dataclass(frozen=True, slots=True)
class Cluster:
    """A merged entry with more than one copy."""

    entry_id: str  # the entry's id
    first_seen: datetime  # its first sight
    copies: tuple[ClusterCopy, ...]  # every copy, oldest first
