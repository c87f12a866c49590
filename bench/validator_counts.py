"""The W3C Feed Validator's counts on merged feeds: errors and warnings by type, every occurrence.

    python bench/validator_counts.py [--hard DIR] [--checkout DIR]

Each merged feed is made by a real refresh into a fresh folder, then read by the validator
(../shared/validators, run offline; its rel="self" check is given the feed's own self link):
the bundled example (config.toml and examples/), the shared seed captures (../shared/seeds,
five captures of one page, refreshed in turn), the hard feeds of tests/data/valid (each
served over HTTP and read as a local file), and a source with no entries; each with and
without `[feed] author`, and the hard feeds with `[output] content = "full"` too. The
suite asserts the same (tests/test_valid_outputs.py); this prints the counts. `--checkout`
runs another checkout's aggregator on the same inputs (for figures before a change).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VALIDATORS = ROOT.parent / "shared" / "validators"
SEEDS = ROOT.parent / "shared" / "seeds"
MEDIA = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
}
AUTHOR = 'author = "The Editors"'


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def counts(feed: Path) -> Counter[str]:
    sys.path.insert(0, str(VALIDATORS / "feedvalidator"))
    import feedvalidator
    from feedvalidator import compatibility
    from feedvalidator.logging import Error
    from feedvalidator.logging import Warning as ValidatorWarning

    data = feed.read_bytes()
    found = re.search(rb'<link href="([^"]+)" rel="self"', data)
    base = found.group(1).decode() if found else ""
    events = feedvalidator.validateString(data, firstOccurrenceOnly=0, base=base)["loggedEvents"]
    out: Counter[str] = Counter()
    for event in compatibility.AA(events):
        if isinstance(event, Error):
            out[f"ERROR {type(event).__name__}"] += 1
        elif isinstance(event, ValidatorWarning):
            out[f"WARNING {type(event).__name__}"] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hard", type=Path, default=ROOT / "tests" / "data" / "valid")
    parser.add_argument("--checkout", type=Path, default=ROOT)
    args = parser.parse_args()
    sys.path.insert(0, str(args.checkout.resolve()))
    from aggregator.config import load_config
    from aggregator.refresh import refresh
    from tests.helpers import LocalServer, write_config

    def config_with(tmp: Path, link: str, sources: str, author: bool, output: str = "") -> Path:
        return write_config(
            tmp,
            f'[feed]\ntitle = "Merged"\nlink = "{link}"\nmax_entries = 200\n'
            f'{AUTHOR if author else ""}\n[output]\ndir = "out"\n{output}\n'
            f'[store]\npath = "state/agg.db"\n{sources}',
        )

    def example(tmp: Path, author: bool) -> Path:
        shutil.copytree(args.checkout / "examples", tmp / "examples")
        text = (args.checkout / "config.toml").read_text(encoding="utf-8")
        if author:
            text = text.replace("[feed]\n", f"[feed]\n{AUTHOR}\n", 1)
        (tmp / "config.toml").write_text(text, encoding="utf-8")
        config = load_config(tmp / "config.toml")
        refresh(config, force=True)
        return config.output_dir / "feed.atom"

    def seeds(tmp: Path, author: bool) -> Path:
        source = (
            f'[[sources]]\nname = "capture"\nurl = "{server.url("/capture.txt")}"\nkind = "text"'
        )
        config = load_config(config_with(tmp, "https://seeds.test/", source, author))
        clock = Clock()
        for seed in sorted(SEEDS.glob("*.txt")):
            server.serve("/capture.txt", seed.read_bytes(), "text/plain; charset=utf-8")
            clock.now += timedelta(hours=1)
            refresh(config, force=True, clock=clock)
        return config.output_dir / "feed.atom"

    def hard(tmp: Path, author: bool, output: str = "") -> Path:
        sources = []
        for path in sorted(args.hard.iterdir()):
            if path.suffix in MEDIA and path.stem != "empty":
                server.serve("/" + path.name, path.read_bytes(), MEDIA[path.suffix])
                sources.append(
                    f'[[sources]]\nname = "{path.stem}"\nurl = "{server.url("/" + path.name)}"'
                )
                sources.append(f'[[sources]]\nname = "file-{path.stem}"\nurl = "{path}"')
        config = load_config(
            config_with(tmp, "https://hard.test/", "\n".join(sources), author, output)
        )
        refresh(config, force=True, clock=Clock())
        return config.output_dir / "feed.atom"

    def empty(tmp: Path, author: bool) -> Path:
        source = f'[[sources]]\nname = "empty"\nurl = "{args.hard / "empty.atom"}"'
        config = load_config(config_with(tmp, "https://empty.test/", source, author))
        refresh(config, force=True, clock=Clock())
        return config.output_dir / "feed.atom"

    runs: dict[str, Callable[[Path, bool], Path]] = {
        "bundled example": example,
        "seed captures": seeds,
        "hard feeds": hard,
        "hard feeds, full content": lambda tmp, author: hard(tmp, author, 'content = "full"'),
        "no entries": empty,
    }
    server = LocalServer()
    try:
        for name, make in runs.items():
            for author in (False, True):
                with tempfile.TemporaryDirectory() as tmp:
                    try:
                        found = counts(make(Path(tmp), author))
                        text = ", ".join(f"{k}: {v}" for k, v in sorted(found.items())) or "clean"
                    except Exception as exc:  # e.g. a config key this checkout lacks
                        text = f"not run ({type(exc).__name__}: {exc})"
                    label = f"{name}, {'with' if author else 'without'} [feed] author"
                    print(f"{label:52} {text}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
