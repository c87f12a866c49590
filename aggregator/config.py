"""Read and validate `config.toml` into frozen records.

pydantic's validation core (pydantic-core) checks the document against the schema below
(unknown keys, types, ranges), so that every mistake is reported as one line naming the file,
the key and the problem; the rest of the program only sees the frozen records below. Every
default is the one its record declares: the schema reads it from the record's field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit

from aggregator.errors import ConfigError
from aggregator.models import ExcerptOptions, SelectRules, Source

if TYPE_CHECKING:
    from pydantic_core import CoreConfig, SchemaValidator, ValidationError


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """The merged output feed (`[feed]`)."""

    title: str  # the feed's title
    link: str  # public URL of the feed's site
    id: str  # the feed's Atom id; derived from link unless set
    max_entries: int = 100  # entries in feed.atom and snapshot.json
    subtitle: str | None = None  # optional description
    author: str | None = None  # optional feed author: "Name", or "Name <email>"
    self_url: str | None = None  # public URL of feed.atom itself; default: feed.atom beside link


# An output's name is its file stem and part of its URL paths: lower-case letters, digits, "-"
# and "_", nothing that could name another folder. These stems belong to the other outputs.
OUTPUT_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
RESERVED_NAMES = frozenset({"feed", "snapshot", "index", "archive", "healthz"})


@dataclass(frozen=True, slots=True)
class OutputSettings:
    """One more feed from the same store (`[[outputs]]`): the entries its filter selects."""

    name: str  # file stem: <dir>/<name>.atom and <dir>/<name>.json
    title: str  # the feed's title
    categories: tuple[str, ...] = ()  # entries with any of these categories (any case); () all
    sources: tuple[str, ...] = ()  # entries with a copy from any of these sources; () all
    max_entries: int = 100  # entries in the feed document; older ones go to archives


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
    store_path: Path  # [store] path, absolute: the SQLite store, unless store_url is set
    excerpt: ExcerptOptions  # [excerpt]
    sources: tuple[Source, ...]  # [[sources]], in file order
    fetch: FetchSettings = field(default_factory=FetchSettings)  # [fetch]
    dedup: DedupSettings = field(default_factory=DedupSettings)  # [dedup]
    content: Literal["excerpt", "full"] = "excerpt"  # [output] content: plain excerpt or HTML
    server_host: str = "127.0.0.1"  # [server] host
    server_port: int = 8080  # [server] port
    store_url: str | None = None  # [store] url: a PostgreSQL database, in place of store_path
    outputs: tuple[OutputSettings, ...] = ()  # [[outputs]], in file order
    websub_hub: str | None = None  # [output] websub_hub: the hub told of each changed feed
    store_keep_seconds: int | None = None  # [store] keep: entries older than this are pruned

    def source(self, name: str) -> Source:
        for s in self.sources:
            if s.name == name:
                return s
        raise ConfigError(f"{self.path}: no source named {name!r}")


# --- the schema (private) ---------------------------------------------------------------------

DEFAULT_STORE_PATH = "data/aggregator.db"  # [store] path when neither path nor url is set

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


def _url(v: str) -> str:
    scheme = urlsplit(v).scheme.lower()
    # A one-letter "scheme" is a Windows drive letter, i.e. a path.
    if scheme and len(scheme) > 1 and scheme not in ("http", "https", "file"):
        raise ValueError(f"unsupported URL scheme {scheme!r} (use http, https or a file path)")
    if scheme in ("http", "https") and not urlsplit(v).hostname:
        raise ValueError("URL has no host")
    return v


def _pg_url(v: str) -> str:
    if urlsplit(v).scheme.lower() not in ("postgresql", "postgres"):
        raise ValueError("not a PostgreSQL URL (use postgresql://user@host:port/database)")
    return v


def _public_url(v: str) -> str:
    """An absolute http(s) URL: what a reader can follow."""
    parts = urlsplit(v)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL, e.g. 'https://example.org/feed.atom'")
    return v


def _author(v: str) -> str:
    """A name (optionally with an e-mail address), one line, without markup."""
    if not v.strip():
        return v
    if any(c in v for c in "<>") and not re.fullmatch(r"[^<>]*<[^<>@\s]+@[^<>\s]+>\s*", v):
        raise ValueError("must be a plain name, or 'Name <email@example.org>'")
    if not v.isprintable():
        raise ValueError("must be one line of printable text")
    return v


def _interval(v: str | int) -> str | int:
    parse_interval(v)
    return v


def _patterns(v: str | list[str]) -> tuple[str, ...]:
    """`include` / `exclude`: one regular expression or a list of them, each compiled once
    here so that a mistake is a config error, not a refresh failure."""
    patterns = (v,) if isinstance(v, str) else tuple(v)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return patterns


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _headers(v: dict[str, str]) -> dict[str, str]:
    for name, value in v.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError(f"header {name}: a value may not contain a line break")
    return v


def _int_as_float(v: Any) -> Any:
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


# pydantic-core schemas, written as the plain dicts its `core_schema` helpers return.
Schema = dict[str, Any]
_STRICT: CoreConfig = {"strict": True}
_BOOL: Schema = {"type": "bool"}


def _int(**bounds: int) -> Schema:
    return {"type": "int", **bounds}


def _float(**bounds: float) -> Schema:
    """A number; an integer (`timeout = 20`) is taken as a float."""
    return {
        "type": "function-before",
        "function": {"type": "no-info", "function": _int_as_float},
        "schema": {"type": "float", **bounds},
    }


def _str(min_length: int = 1, **more: Any) -> Schema:
    return {"type": "str", **({"min_length": min_length} if min_length else {}), **more}


def _optional(schema: Schema) -> Schema:
    return {"type": "nullable", "schema": schema}


def _then(schema: Schema, check: Callable[[Any], Any]) -> Schema:
    return {
        "type": "function-after",
        "function": {"type": "no-info", "function": check},
        "schema": schema,
    }


_INTERVAL_SCHEMA = _then({"type": "union", "choices": [_str(0), _int()]}, _interval)
_PATTERNS: Schema = {
    "type": "union",
    "choices": [_str(), {"type": "list", "items_schema": _str()}],
}


def _defaults(record: type) -> dict[str, Any]:
    """The defaults a dataclass declares, by field name."""
    out: dict[str, Any] = {}
    for f in fields(record):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def _table(keys: dict[str, Schema], record: type | None = None, **defaults: Any) -> Schema:
    """A TOML table of exactly `keys`. A key takes its default from `defaults`, else from the
    record's field of that name; a key with neither (and not an optional section) is required."""
    known = {**(_defaults(record) if record else {}), **defaults}
    out: dict[str, Schema] = {}
    for name, schema in keys.items():
        if name in known:
            schema = {"type": "default", "schema": schema, "default": known[name]}
        required = schema["type"] != "default"
        out[name] = {"type": "typed-dict-field", "schema": schema, "required": required}
    # Strict: no coercion (a string is not a number, nor a number a string); no unknown keys.
    return {"type": "typed-dict", "fields": out, "extra_behavior": "forbid", "config": _STRICT}


def _section(table: Schema) -> Schema:
    """An optional [section]: when absent, its keys' defaults."""
    return {"type": "default", "schema": table, "default": {}, "validate_default": True}


_SELECT = _table(
    {
        "entry": _optional(_str()),
        "title": _optional(_str()),
        "link": _optional(_str()),
        "date": _optional(_str()),
        "excerpt": _optional(_str()),
        "category": _optional(_str()),
        "next": _optional(_str()),
        "max_pages": _int(ge=1, le=100),
    },
    SelectRules,
)

_SOURCE = _table(
    {
        "name": _str(max_length=100, pattern=r"^[^\x00-\x1f]+$"),
        "url": _then(_str(), _url),
        "kind": {"type": "literal", "expected": ["auto", "feed", "page", "text"]},
        "category": _optional(_str()),
        "select": _optional(_SELECT),
        "header_lines": {"type": "list", "items_schema": _str(0)},
        "interval": _optional(_INTERVAL_SCHEMA),
        "allow_duplicate_links": _BOOL,
        "max_entries": _int(ge=1, le=100_000),
        "robots": _optional(_BOOL),
        "enabled": _BOOL,
        "title": _optional(_str()),
        "include": _then(_PATTERNS, _patterns),
        "exclude": _then(_PATTERNS, _patterns),
        "headers": _then(
            {"type": "dict", "keys_schema": _str(), "values_schema": _str(0)}, _headers
        ),
    },
    Source,
    interval=None,  # the [schedule] interval
    headers={},
)

_OUTPUT = _table(
    {
        "name": _str(pattern=OUTPUT_NAME),
        "title": _str(),
        "categories": {"type": "list", "items_schema": _str()},
        "sources": {"type": "list", "items_schema": _str()},
        "max_entries": _int(ge=1, le=10_000),
    },
    OutputSettings,
    categories=[],
    sources=[],
)


def _hub(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("a WebSub hub is an http(s) URL")
    return v


_ROOT = _table(
    {
        "feed": _table(
            {
                "title": _str(),
                "link": _str(),
                "id": _optional(_str()),
                "max_entries": _int(ge=1, le=10_000),
                "subtitle": _optional(_str(0)),
                "author": _optional(_then(_str(0), _author)),
                "self_url": _optional(_then(_str(), _public_url)),
            },
            FeedSettings,
            link="http://localhost/",
            id=None,  # the link
        ),
        "output": _section(
            _table(
                {
                    "dir": _str(),
                    "content": {"type": "literal", "expected": ["excerpt", "full"]},
                    "websub_hub": _optional(_then(_str(), _hub)),
                },
                dir="public",
                content=_defaults(Config)["content"],
                websub_hub=None,
            )
        ),
        "outputs": {"type": "list", "items_schema": _OUTPUT},
        "store": _section(
            _table(
                {
                    "path": _optional(_str()),
                    "url": _optional(_then(_str(), _pg_url)),
                    "keep": _optional(_INTERVAL_SCHEMA),
                },
                path=None,
                url=None,
                keep=None,
            )
        ),
        "excerpt": _section(
            _table(
                {
                    "max_chars": _int(ge=20, le=100_000),
                    "code_placeholder": _str(0),
                    "formula_placeholder": _str(0),
                },
                ExcerptOptions,
            )
        ),
        "fetch": _section(
            _table(
                {
                    "timeout": _float(gt=0, le=600),
                    "max_bytes": _int(ge=1024),
                    "max_workers": _int(ge=1, le=256),
                    "per_host": _int(ge=1, le=64),
                    "allow_private": _BOOL,
                    "parse_timeout": _float(gt=0, le=600),
                },
                FetchSettings,
            )
        ),
        "dedup": _section(
            _table(
                {"near_duplicates": _BOOL, "threshold": _float(gt=0, le=1)},
                DedupSettings,
            )
        ),
        "schedule": _section(
            _table(
                {"interval": _INTERVAL_SCHEMA},
                interval=_defaults(Source)["interval_seconds"],
            )
        ),
        "server": _section(
            _table(
                {"host": _str(), "port": _int(ge=0, le=65535)},
                host=_defaults(Config)["server_host"],
                port=_defaults(Config)["server_port"],
            )
        ),
        "sources": {"type": "list", "items_schema": _SOURCE},
    },
    sources=[],
    outputs=[],
)


@cache
def _validator() -> SchemaValidator:
    # Imported on first use: modules that only need the records need not load it.
    from pydantic_core import SchemaValidator

    return SchemaValidator(_ROOT, _STRICT)


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


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table at `loc` (a pydantic location, the unknown key last) accepts."""
    schema: Schema = _ROOT
    for part in loc[:-1]:
        while schema["type"] in ("default", "nullable", "function-after", "function-before"):
            schema = schema["schema"]
        if schema["type"] == "list":
            schema = schema["items_schema"]
            continue
        if schema["type"] != "typed-dict" or part not in schema["fields"]:
            return []
        schema = schema["fields"][part]["schema"]
    while schema["type"] in ("default", "nullable", "function-after", "function-before"):
        schema = schema["schema"]
    return list(schema.get("fields", ()))


def _problems(path: Path, exc: ValidationError, data: dict[str, Any]) -> list[str]:
    """Every problem pydantic found, one line each: file, key, what is wrong; for an unknown
    key, the nearest known one."""
    from difflib import get_close_matches

    out: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # A union (include = "x" or a list) reports each choice; the location names them.
        loc = tuple(p for p in loc if p not in ("str", "list[str]", "int"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            near = get_close_matches(str(loc[-1]), _known_keys(loc), n=1, cutoff=0.6)
            if near:
                msg += f" (did you mean {near[0]}?)"
        line = f"{path}: {_loc(loc, data)}: {msg}"
        if line not in out:
            out.append(line)
    return out


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
        raise ConfigError(
            f"{path}: config file not found: create one with `aggregator init`"
        ) from None
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
    from pydantic_core import ValidationError

    try:
        root = _validator().validate_python(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_problems(path, exc, data))) from None
    base = path.resolve().parent
    seen: set[str] = set()
    duplicates: list[str] = []
    for i, s in enumerate(root["sources"]):
        if s["name"] in seen:
            duplicates.append(f"{path}: sources[{i}].name: duplicate source name {s['name']!r}")
        seen.add(s["name"])
    if duplicates:
        raise ConfigError("\n".join(duplicates))
    default_interval = parse_interval(root["schedule"]["interval"])
    sources = tuple(
        Source(
            name=s["name"],
            url=_source_url(base, s["url"]),
            kind=s["kind"],
            category=s["category"],
            select=SelectRules(**s["select"]) if s["select"] else None,
            header_lines=tuple(s["header_lines"]),
            interval_seconds=(
                default_interval if s["interval"] is None else parse_interval(s["interval"])
            ),
            allow_duplicate_links=s["allow_duplicate_links"],
            max_entries=s["max_entries"],
            robots=s["robots"],
            enabled=s["enabled"],
            title=s["title"],
            include=s["include"],
            exclude=s["exclude"],
            headers=tuple(s["headers"].items()),
        )
        for s in root["sources"]
    )
    store = root["store"]
    if store["path"] is not None and store["url"] is not None:
        raise ConfigError(
            f"{path}: store: both path (SQLite) and url (PostgreSQL) are set; keep only one"
        )
    outputs = _outputs(path, root["outputs"], seen)
    feed = root["feed"]
    return Config(
        path=path.resolve(),
        feed=FeedSettings(
            **{
                **feed,
                "id": feed["id"] or feed["link"],
                "author": (feed["author"] or "").strip() or None,
                "self_url": feed["self_url"] or urljoin(feed["link"], "feed.atom"),
            }
        ),
        output_dir=_resolve_path(base, root["output"]["dir"]),
        content=root["output"]["content"],
        store_path=_resolve_path(base, store["path"] or DEFAULT_STORE_PATH),
        store_url=store["url"],
        excerpt=ExcerptOptions(**root["excerpt"]),
        sources=sources,
        fetch=FetchSettings(**root["fetch"]),
        dedup=DedupSettings(**root["dedup"]),
        server_host=root["server"]["host"],
        server_port=root["server"]["port"],
        outputs=outputs,
        websub_hub=root["output"]["websub_hub"],
        store_keep_seconds=(
            None if root["store"]["keep"] is None else parse_interval(root["store"]["keep"])
        ),
    )


def _outputs(
    path: Path, raw: list[dict[str, Any]], source_names: set[str]
) -> tuple[OutputSettings, ...]:
    names: set[str] = set()
    out = []
    for i, o in enumerate(raw):
        where = f"{path}: outputs[{i}] ({o['name']!r})"
        if o["name"] in RESERVED_NAMES:
            raise ConfigError(f"{where}.name: {o['name']!r} is taken by the main outputs")
        if o["name"] in names:
            raise ConfigError(f"{where}.name: duplicate output name")
        names.add(o["name"])
        for name in o["sources"]:
            if name not in source_names:
                raise ConfigError(f"{where}.sources: no source named {name!r}")
        out.append(
            OutputSettings(
                name=o["name"],
                title=o["title"],
                categories=tuple(o["categories"]),
                sources=tuple(o["sources"]),
                max_entries=o["max_entries"],
            )
        )
    return tuple(out)
