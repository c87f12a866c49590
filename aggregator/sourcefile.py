"""Editing the `[[sources]]` of a config file in place: append blocks, remove one.

tomlkit reads the file into a document that keeps its comments, blank lines, key order and
quoting, so a person's config comes back as they wrote it with only the blocks changed. The
edited text is validated like any config before it replaces the file (atomically, keeping its
permissions): an edit never leaves a config that does not load.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from aggregator.config import config_from_dict
from aggregator.errors import ConfigError

__all__ = ["add_sources", "name_for", "remove_source"]


def _document(path: Path) -> Any:
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found: create one with `aggregator init`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except ParseError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _save(path: Path, doc: Any) -> None:
    import tomlkit

    text = tomlkit.dumps(doc)
    config_from_dict(tomllib.loads(text), path)  # raises ConfigError: the file stays as it was
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_sources(path: Path, blocks: Sequence[Mapping[str, Any]]) -> None:
    """Append one `[[sources]]` table per block, after the last one, in the order given."""
    import tomlkit

    if not blocks:
        return
    doc = _document(path)
    if "sources" not in doc:
        doc.append("sources", tomlkit.aot())
    sources = doc["sources"]
    for block in blocks:
        if len(sources) and not sources[-1].as_string().endswith("\n\n"):
            sources[-1].add(tomlkit.nl())  # a blank line between blocks, as people write them
        table = tomlkit.table()
        for key, value in block.items():
            if isinstance(value, Mapping):
                sub = tomlkit.table()
                sub.update(value)
                table.append(key, sub)
            elif value is not None:
                table.append(key, value)
        sources.append(table)
    _save(path, doc)


def remove_source(path: Path, name: str) -> None:
    """Remove the `[[sources]]` table named `name`. Raises ConfigError if there is none."""
    doc = _document(path)
    sources = doc.get("sources", [])
    for i, table in enumerate(sources):
        if table.get("name") == name:
            del sources[i]
            if not len(sources):
                del doc["sources"]
            _save(path, doc)
            return
    raise ConfigError(f"{path}: no source named {name!r}")


_NOT_WORD = re.compile(r"[^\w]+")


def name_for(title: str | None, url: str, taken: Collection[str]) -> str:
    """A source name made from a title (else the URL's host): lower case, words joined by
    "-", at most 60 characters, not one of `taken` (a number is appended when it is)."""
    from urllib.parse import urlsplit

    base = unicodedata.normalize("NFKC", title or "").casefold()
    base = _NOT_WORD.sub("-", base).strip("-_")[:60].strip("-_")
    if not base:
        host = urlsplit(url).hostname or Path(url).stem or "source"
        base = _NOT_WORD.sub("-", host.removeprefix("www.").casefold()).strip("-")[:60]
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name
