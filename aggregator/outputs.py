"""Every feed the store gives: the main feed and each `[[outputs]]` feed, with their archives.

An output is a name (its file stem), a title, a filter (`EntryMatch`) and a page size. For
each, the store says which of its entries are not sealed into an archive page yet;
`archive.plan` splits them into the feed document, pages to seal now and the open page. This
module seals those pages, renders each document and writes it when its bytes change:

    <dir>/<name>.atom, <dir>/<name>.json                    the feed documents
    <dir>/archive/<name>/<page>.atom, .json (.html: main)   the archive pages, oldest is 1

A sealed page is rendered once, when it is sealed (or when its file is missing), and never
again: its bytes do not change, so it can be cached for good. A refresh renders at most
`MISSING_PAGES` pages that have no files yet, newest first: a large store's first refresh
seals its whole history at once, and the oldest pages appear over the next refreshes. The
caller writes the feed documents (`Written.write`) and tells the WebSub hub which changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from aggregator import archive, emit
from aggregator.config import Config
from aggregator.models import Entry, EntryMatch, Source, SourceState
from aggregator.store import Store

MAIN = "feed"  # the main output's name: feed.atom and feed.json
# Archive pages whose files are missing rendered in one refresh, at most (about 30 ms each).
MISSING_PAGES = 100


@dataclass(frozen=True, slots=True)
class Output:
    """One feed the store gives, and what it selects."""

    name: str  # file stem
    title: str  # feed title
    match: EntryMatch  # which entries it holds
    size: int  # entries in the feed document and in each archive page
    html: bool = False  # whether its archive pages are also rendered as HTML pages


@dataclass(frozen=True, slots=True)
class Written:
    """One output with its archive pages written and its feed documents rendered."""

    output: Output
    current: list[Entry]  # the feed document's entries, newest first
    pages: int  # archive pages, the open one included (0: none)
    newest: int | None  # the newest page with entries: where the page's "older" link goes
    meta: emit.FeedMeta  # what its feed documents say about themselves
    feeds: tuple[tuple[str, bytes, str], ...]  # (file name, bytes, public URL): to write

    def write(self, directory: Path) -> list[str]:
        """Write the feed documents whose bytes changed; their file names."""
        return [
            name for name, data, _ in self.feeds if emit.write_if_changed(directory, name, data)
        ]

    def url(self, name: str) -> str:
        return next(url for file, _, url in self.feeds if file == name)


def outputs_of(config: Config) -> list[Output]:
    """The main output, then each configured one."""
    main = Output(MAIN, config.feed.title, EntryMatch(), config.feed.max_entries, html=True)
    return [main] + [
        Output(o.name, o.title, EntryMatch.of(o.categories, o.sources), o.max_entries)
        for o in config.outputs
    ]


def public_base(config: Config) -> str:
    """Where the output folder is published: the folder of `[feed] self_url`, else the site."""
    if config.feed.self_url:
        return config.feed.self_url.rsplit("/", 1)[0] + "/"
    link = config.feed.link
    return link if link.endswith("/") else link + "/"


def seal(store: Store, output: Output) -> archive.Plan:
    """Decide where the output's entries go and seal the pages that filled. Read and sealed
    under the store's write lock: another process writing the outputs at the same time waits,
    then finds the pages sealed."""
    with store.transaction():
        sealed = store.archive_pages(output.name)
        unsealed = store.output_entries(output.name, output.match)
        plan = archive.plan(unsealed, sealed, output.size)
        for n, ids in enumerate(plan.new_pages, sealed + 1):
            store.seal_archive(output.name, n, ids)
    return plan


def write_output(
    config: Config,
    store: Store,
    output: Output,
    plan: archive.Plan,
    states: Mapping[str, SourceState],
    empty_updated: datetime,
    *,
    missing_pages: int = MISSING_PAGES,
) -> Written:
    """Write the output's archive pages as `plan` (from `seal`) has them and render its feed
    documents (the caller writes them, with the other outputs, back to back). `states` hold
    what each source says about itself; `empty_updated` dates a feed without entries."""
    base = public_base(config)
    sealed = plan.sealed
    sources = {s.name: s for s in config.sources}
    meta = feed_meta(config, output, base)
    pages_dir = config.output_dir / archive.ARCHIVE_DIR / output.name
    current = store.load_entries(plan.current)
    # An empty open page is dated by the feed's newest entry: the same on every refresh.
    docs = Documents(config, output, meta, base, sources, states)
    docs.empty_updated = max((e.updated for e in current), default=empty_updated)
    # The open page, and the page that was open until now (its file holds what it held then),
    # are always written; other pages only when their files are missing, newest first, at
    # most MISSING_PAGES a refresh (a large store's first refresh seals many pages at once).
    must = {plan.pages, sealed + 1} if plan.new_pages else {plan.pages}
    budget = missing_pages
    for page in range(plan.pages, 0, -1):
        if page not in must:
            if budget == 0 or _complete(pages_dir, page, output.html):
                continue  # a sealed page's files never change
            budget -= 1
        page_ids: Sequence[str] = (
            plan.open if page == plan.pages else _page_ids(store, output, plan, page)
        )
        docs.write_page(page, plan.pages, store.load_entries(page_ids))
    links = archive.feed_links(plan.pages)
    subscribe = replace(
        meta,
        hub=config.websub_hub,
        links=_atom_links(base, output.name, links),
        next_url=_url(base, output.name, links.prev_archive, "json"),
    )
    atom = emit.render_atom(subscribe, current, sources, states, empty_updated=empty_updated)
    json_feed = emit.render_json_feed(subscribe, current, sources, states)
    # The Atom feed last: a reader that finds it changed finds the JSON Feed changed too.
    feeds = (
        (f"{output.name}.json", json_feed, subscribe.json_url or f"{base}{output.name}.json"),
        (f"{output.name}.atom", atom, subscribe.self_url or f"{base}{output.name}.atom"),
    )
    newest = (plan.pages if plan.open else plan.pages - 1) or None
    return Written(output, current, plan.pages, newest, subscribe, feeds)


def _complete(pages_dir: Path, page: int, html: bool) -> bool:
    exts = ("atom", "json", "html") if html else ("atom", "json")
    return all((pages_dir / f"{page}.{ext}").exists() for ext in exts)


def _page_ids(store: Store, output: Output, plan: archive.Plan, page: int) -> Sequence[str]:
    if page > plan.sealed:
        return plan.new_pages[page - plan.sealed - 1]
    return store.archive_page(output.name, page)


def feed_meta(config: Config, output: Output, base: str) -> emit.FeedMeta:
    """What an output's documents say about themselves (archive pages add their links)."""
    if output.name == MAIN:
        return emit.FeedMeta(
            title=config.feed.title,
            link=config.feed.link,
            id=config.feed.id,
            subtitle=config.feed.subtitle,
            author=config.feed.author,
            self_url=config.feed.self_url,
            content=config.content,
        )
    return emit.FeedMeta(
        title=output.title,
        link=config.feed.link,
        id=f"{base}{output.name}.atom",
        author=config.feed.author,
        self_url=f"{base}{output.name}.atom",
        json_url=f"{base}{output.name}.json",
        content=config.content,
    )


def _url(base: str, output: str, page: int | None, ext: str) -> str | None:
    return None if page is None else base + archive.page_path(output, page, ext)


def _atom_links(base: str, output: str, links: archive.PageLinks) -> tuple[tuple[str, str], ...]:
    out = []
    for rel, page in (("prev-archive", links.prev_archive), ("next-archive", links.next_archive)):
        url = _url(base, output, page, "atom")
        if url:
            out.append((rel, url))
    if links.archive:
        out.append(("current", f"{base}{output}.atom"))
    return tuple(out)


class Documents:
    """Renders and writes an output's archive pages."""

    def __init__(
        self,
        config: Config,
        output: Output,
        meta: emit.FeedMeta,
        base: str,
        sources: Mapping[str, Source],
        states: Mapping[str, SourceState],
    ) -> None:
        self.config, self.output, self.meta, self.base = config, output, meta, base
        self.sources, self.states = sources, states
        self.empty_updated: datetime | None = None  # the date of a page without entries
        self.folder = config.output_dir / archive.ARCHIVE_DIR / output.name

    def write_page(self, page: int, pages: int, entries: Sequence[Entry]) -> None:
        name, base = self.output.name, self.base
        links = archive.page_links(page, pages)
        page_meta = replace(
            self.meta,
            self_url=_url(base, name, page, "atom"),
            json_url=_url(base, name, page, "json"),
            links=_atom_links(base, name, links),
            archive=True,
            next_url=_url(base, name, links.prev_archive, "json"),
        )
        atom = emit.render_atom(
            page_meta, entries, self.sources, self.states, empty_updated=self.empty_updated
        )
        emit.write_if_changed(self.folder, f"{page}.atom", atom)
        json_feed = emit.render_json_feed(page_meta, entries, self.sources, self.states)
        emit.write_if_changed(self.folder, f"{page}.json", json_feed)
        if self.output.html:
            html = emit.render_history(self.meta, entries, self.sources, page, pages, self.states)
            emit.write_if_changed(self.folder, f"{page}.html", html)
