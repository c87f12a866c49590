"""Read and validate `config.toml` into frozen records.

pydantic does the validation (unknown keys, types, ranges) so that every mistake is reported
as one line naming the file, the key and the problem; the rest of the program only sees the
frozen records below.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aggregator.errors import ConfigError
from aggregator.models import ExcerptOptions, SelectRules, Source

DEFAULT_INTERVAL = 3600


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """The merged output feed (`[feed]`)."""

    title: str  # the feed's title
    link: str  # public URL of the feed's site
    id: str  # the feed's Atom id; derived from link unless set
    max_entries: int = 100  # entries in feed.atom and snapshot.json
    subtitle: str | None = None  # optional description
    author: str | None = None  # optional feed author name
    self_url: str | None = None  # public URL of feed.atom itself, for rel="self"


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """How sources are fetched (`[fetch]`)."""

    timeout: float = 20.0  # seconds: connect and read timeout, and the total deadline
    max_bytes: int = 10 * 1024 * 1024  # decoded body size cap
    max_workers: int = 16  # sources fetched at once
    per_host: int = 2  # requests to one host at once
    allow_private: bool = True  # whether configured URLs may name private addresses
    parse_timeout: float = 30.0  # seconds a large or unusual XML feed may take to parse


@dataclass(frozen=True, slots=True)
class DedupSettings:
    """How repeated posts are recognised (`[dedup]`)."""

    near_duplicates: bool = True  # match near-duplicate text, not only exact repeats
    threshold: float = 0.7  # similarity above which two texts are one post


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    path: Path  # the config file
    feed: FeedSettings  # [feed]
    output_dir: Path  # [output] dir, absolute
    store_path: Path  # [store] path, absolute
    excerpt: ExcerptOptions  # [excerpt]
    sources: tuple[Source, ...]  # [[sources]], in file order
    fetch: FetchSettings = field(default_factory=FetchSettings)  # [fetch]
    dedup: DedupSettings = field(default_factory=DedupSettings)  # [dedup]
    server_host: str = "127.0.0.1"  # [server] host
    server_port: int = 8080  # [server] port

    def source(self, name: str) -> Source:
        for s in self.sources:
            if s.name == name:
                return s
        raise ConfigError(f"{self.path}: no source named {name!r}")


# --- validation models (private) -------------------------------------------------------------

_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(value: str | int) -> int:
    """`"30m"`, `"2h"`, `"1d"`, `"90s"` or a number of seconds → seconds."""
    if isinstance(value, int):
        seconds = value
    else:
        m = _INTERVAL.match(value)
        if not m:
            raise ValueError(f"not an interval: {value!r} (use e.g. '30m', '2h', '1d')")
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 60:
        raise ValueError("interval must be at least 60 seconds")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


NonEmpty = Annotated[str, Field(min_length=1)]


class _Feed(_Strict):
    title: NonEmpty
    link: NonEmpty = "http://localhost/"
    id: NonEmpty | None = None
    max_entries: Annotated[int, Field(ge=1, le=10_000)] = 100
    subtitle: str | None = None
    author: str | None = None
    self_url: str | None = None


class _Output(_Strict):
    dir: NonEmpty = "public"


class _Store(_Strict):
    path: NonEmpty = "data/aggregator.db"


class _Excerpt(_Strict):
    max_chars: Annotated[int, Field(ge=20, le=100_000)] = 350
    code_placeholder: str = "[code]"
    formula_placeholder: str = "[formula]"


class _Fetch(_Strict):
    timeout: Annotated[float, Field(gt=0, le=600)] = 20.0
    max_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    max_workers: Annotated[int, Field(ge=1, le=256)] = 16
    per_host: Annotated[int, Field(ge=1, le=64)] = 2
    allow_private: bool = True
    parse_timeout: Annotated[float, Field(gt=0, le=600)] = 30.0

    @field_validator("timeout", "parse_timeout", mode="before")
    @classmethod
    def _int_ok(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class _Dedup(_Strict):
    near_duplicates: bool = True
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.7


class _Schedule(_Strict):
    interval: str | int = "1h"

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str | int) -> str | int:
        parse_interval(v)
        return v


class _Server(_Strict):
    host: NonEmpty = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080


class _Select(_Strict):
    entry: NonEmpty
    title: NonEmpty | None = None
    link: NonEmpty | None = None
    date: NonEmpty | None = None
    excerpt: NonEmpty | None = None
    category: NonEmpty | None = None
    next: NonEmpty | None = None
    max_pages: Annotated[int, Field(ge=1, le=100)] = 3


class _Source(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]
    url: NonEmpty
    kind: Literal["auto", "feed", "page", "text"] = "auto"
    category: NonEmpty | None = None
    select: _Select | None = None
    header_lines: list[str] | None = None
    interval: str | int | None = None
    allow_duplicate_links: bool = False
    max_entries: Annotated[int, Field(ge=1, le=100_000)] = 500
    robots: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        scheme = urlsplit(v).scheme.lower()
        # A one-letter "scheme" is a Windows drive letter, i.e. a path.
        if scheme and len(scheme) > 1 and scheme not in ("http", "https", "file"):
            raise ValueError(f"unsupported URL scheme {scheme!r} (use http, https or a file path)")
        if scheme in ("http", "https") and not urlsplit(v).hostname:
            raise ValueError("URL has no host")
        return v

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            parse_interval(v)
        return v


class _Root(_Strict):
    feed: _Feed
    output: _Output = _Output()
    store: _Store = _Store()
    excerpt: _Excerpt = _Excerpt()
    fetch: _Fetch = _Fetch()
    dedup: _Dedup = _Dedup()
    schedule: _Schedule = _Schedule()
    server: _Server = _Server()
    sources: list[_Source] = Field(default_factory=list)


def _loc(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """A pydantic error location as the user wrote it: `sources[2] (name "x").select.entry`."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if i == 1 and loc[0] == "sources":
                try:
                    name = data["sources"][part].get("name")
                except (KeyError, IndexError, AttributeError, TypeError):
                    name = None
                if isinstance(name, str):
                    out += f" ({name!r})"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _first_error(path: Path, exc: ValidationError, data: dict[str, Any]) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return ConfigError(f"{path}: {_loc(loc, data)}: {msg}{suffix}")


def _resolve_path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _source_url(base: Path, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() in ("http", "https"):
        return url
    if parts.scheme.lower() == "file":
        return str(_resolve_path(base, parts.path))
    return str(_resolve_path(base, url))


def load_config(path: str | Path) -> Config:
    """Read, validate and resolve a config file. Raises ConfigError with one clear line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return config_from_dict(data, path)


def config_from_dict(data: dict[str, Any], path: Path) -> Config:
    """Validate an already-parsed TOML document; relative paths resolve against `path`'s folder."""
    try:
        root = _Root.model_validate(data)
    except ValidationError as exc:
        raise _first_error(path, exc, data) from None
    base = path.resolve().parent
    seen: set[str] = set()
    for i, s in enumerate(root.sources):
        if s.name in seen:
            raise ConfigError(f"{path}: sources[{i}].name: duplicate source name {s.name!r}")
        seen.add(s.name)
    default_interval = parse_interval(root.schedule.interval)
    sources = tuple(
        Source(
            name=s.name,
            url=_source_url(base, s.url),
            kind=s.kind,
            category=s.category,
            select=SelectRules(**s.select.model_dump()) if s.select else None,
            header_lines=(
                tuple(s.header_lines)
                if s.header_lines is not None
                else ("INCOMING TRANSMISSION", "LATEST UPDATES")
            ),
            interval_seconds=(
                parse_interval(s.interval) if s.interval is not None else default_interval
            ),
            allow_duplicate_links=s.allow_duplicate_links,
            max_entries=s.max_entries,
            robots=s.robots,
        )
        for s in root.sources
    )
    link = root.feed.link
    return Config(
        path=path.resolve(),
        feed=FeedSettings(
            title=root.feed.title,
            link=link,
            id=root.feed.id or link,
            max_entries=root.feed.max_entries,
            subtitle=root.feed.subtitle,
            author=root.feed.author,
            self_url=root.feed.self_url,
        ),
        output_dir=_resolve_path(base, root.output.dir),
        store_path=_resolve_path(base, root.store.path),
        excerpt=ExcerptOptions(
            max_chars=root.excerpt.max_chars,
            code_placeholder=root.excerpt.code_placeholder,
            formula_placeholder=root.excerpt.formula_placeholder,
        ),
        sources=sources,
        fetch=FetchSettings(**root.fetch.model_dump()),
        dedup=DedupSettings(**root.dedup.model_dump()),
        server_host=root.server.host,
        server_port=root.server.port,
    )
