"""The paths that make a refresh fast give the same results as the plain ones.

- parsing in worker processes (used for 16 sources or more, from a single-threaded caller);
- per-source entry counts kept as copies are written instead of counted over the whole store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.refresh import refresh
from aggregator.store import open_store
from tests.helpers import ROOT, LocalServer, generate, write_config

_CHILD = """
import json, sys
import aggregator.collect as collect_module
import pytest

from aggregator.config import load_config
from aggregator.refresh import refresh

started = []
real_start = collect_module.start_pool

def spy(sources):
    pool = real_start(sources)
    started.append(pool is not None)
    return pool

collect_module.start_pool = spy
report = refresh(load_config(sys.argv[1]), force=True)
print(json.dumps({"pool": started, "failed": [r.error for r in report.failed]}))
"""


def _config(tmp_path: Path, server: LocalServer, name: str, extra: tuple[str, ...] = ()) -> Path:
    lines = [
        "[feed]",
        'title = "T"',
        'link = "https://t.example/"',
        "max_entries = 1000",
        "[output]",
        f'dir = "{name}-out"',
        "[store]",
        f'path = "{name}.db"',
        *extra,
    ]
    for path in sorted(server.routes):
        lines += ["[[sources]]", f'name = "{path.strip("/")}"', f'url = "{server.url(path)}"']
    folder = tmp_path / name
    folder.mkdir()
    return write_config(folder, "\n".join(lines) + "\n")


def _records(config_path: Path) -> list[tuple[object, ...]]:
    """What the store holds, a row per copy, leaving out when things were seen."""
    with open_store(load_config(config_path)) as store:
        entries = store.latest(10**6)
    rows: list[tuple[object, ...]] = []
    for e in entries:
        rules = {(d.source, d.key): (d.rule, d.score) for d in e.duplicates}
        shown = (e.id, e.title, e.link, e.excerpt, e.source, e.authors, e.categories)
        rows += [(p.source, p.link, *shown, sorted(rules.items())) for p in e.sources]
    return sorted(rows, key=repr)


def test_parsing_in_processes_stores_what_threads_store(
    tmp_path: Path, server: LocalServer
) -> None:
    for path, body in generate(18, 6).items():
        server.serve(
            path, body, "application/rss+xml" if path.endswith(".xml") else "application/atom+xml"
        )
    pooled = _config(tmp_path, server, "pooled")
    threaded = _config(tmp_path, server, "threaded")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(pooled)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    outcome = json.loads(child.stdout.strip().splitlines()[-1])
    assert outcome == {"pool": [True], "failed": []}
    # In this process the server's thread runs: the refresh parses in its threads.
    report = refresh(load_config(threaded), force=True)
    assert not report.failed
    pooled_rows, threaded_rows = _records(pooled), _records(threaded)
    assert len(pooled_rows) == 18 * 6
    assert pooled_rows == threaded_rows


def test_a_small_look_ahead_still_refreshes_every_source_in_order(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aggregator.collect as collect_module

    for path, body in generate(7, 3).items():
        server.serve(path, body)
    # One fetch thread: a look-ahead of max(1, 4 x 1) = 4 sources, fewer than the 7 here.
    config_path = _config(tmp_path, server, "window", ("[fetch]", "max_workers = 1"))
    monkeypatch.setattr(collect_module, "IN_FLIGHT_MIN", 1)
    config = load_config(config_path)
    seen: list[str] = []
    report = refresh(config, force=True, on_result=lambda r: seen.append(r.source))
    assert [r.outcome for r in report.results] == ["new"] * 7
    assert seen == [s.name for s in config.sources]
    assert len(_records(config_path)) == 21
