"""What `aggregator check` finds wrong with a loaded config without fetching anything: local
files that do not exist (often a web address written without its scheme).

Each finding is an error (the source cannot work: `check` exits 2) or a warning (it may not
work as meant: `check` says so and exits 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aggregator.config import Config

__all__ = ["Finding", "findings"]

Level = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing `check` reports about one source."""

    level: Level
    source: str  # the source's name
    message: str


def findings(config: Config) -> list[Finding]:
    out: list[Finding] = []
    for s in config.sources:
        if not s.is_remote and not Path(s.url).is_file():
            what = "is a folder" if Path(s.url).is_dir() else "not found"
            out.append(
                Finding(
                    "error",
                    s.name,
                    f"local file {what}: {s.url} (a web address needs http:// or https://)",
                )
            )
    return out
