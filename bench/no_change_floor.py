"""The floor under a no-change refresh run as a process: what any Python program pays that
asks the same feeds with conditional GETs through requests, before it does anything else.

    python bench/no_change_floor.py [--feeds 200] [--runs 7]

The feeds (bench/workload.py's) are refreshed once, so that every one then answers 304; then,
each `--runs` times, interleaved, as a process from start to exit:

1. the interpreter alone (`python -c pass`, site and the editable install's finder included);
2. the interpreter importing requests and sqlite3;
3. a program that only makes the conditional GETs: one requests.Session, 16 threads, every
   feed's If-None-Match sent, every 304 read; nothing parsed, stored or written;
4. `aggregator refresh --all -c CONFIG`, stdout a pipe, the same fetch threads.

Printed: the median wall time of each and its range, and 4 less 3: what aggregator adds to
the fetching itself (the rest of its imports, the config, the store, the outputs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import generate, serving

WORKERS = 16

FETCH_ONLY = """
import sys
from concurrent.futures import ThreadPoolExecutor
import requests
urls, etags = sys.argv[1::2], sys.argv[2::2]
session = requests.Session()
session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize={workers}))
def get(pair):
    url, etag = pair
    return session.get(url, headers={{"If-None-Match": etag}}, timeout=20).status_code
with ThreadPoolExecutor({workers}) as pool:
    codes = list(pool.map(get, zip(urls, etags)))
assert set(codes) == {{304}}, set(codes)
"""


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, env={**os.environ})
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr.decode())
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    bodies = generate(args.feeds, args.entries)
    with serving(bodies) as server, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        lines = ["[feed]", 'title = "Floor"', 'link = "https://floor.example.org/"', "[fetch]",
                 f"max_workers = {WORKERS}", f"per_host = {WORKERS}"]  # fmt: skip
        for i, path in enumerate(sorted(bodies)):
            lines += ["[[sources]]", f'name = "feed{i}"', f'url = "{server.base}{path}"']
        config = workdir / "config.toml"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        refresh = [sys.executable, "-m", "aggregator", "refresh", "--all", "-c", str(config)]
        timed(refresh, workdir)  # the first refresh: every feed's validators stored
        pairs = [a for p in sorted(bodies) for a in (server.base + p, server.etags[p])]
        commands = {
            "interpreter alone": [sys.executable, "-c", "pass"],
            "import requests, sqlite3": [sys.executable, "-c", "import requests, sqlite3"],
            "conditional GETs only": [
                sys.executable,
                "-c",
                FETCH_ONLY.format(workers=WORKERS),
                *pairs,
            ],
            "aggregator refresh --all": refresh,
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                times[name].append(timed(argv, workdir))
    print(f"{args.feeds} feeds, all answering 304; {WORKERS} fetch threads; median of {args.runs}")
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"  {name:<26} {medians[name]:.3f} s  [{min(ts):.3f}-{max(ts):.3f}]")
    added = medians["aggregator refresh --all"] - medians["conditional GETs only"]
    print(f"  aggregator beyond the GETs  {added:.3f} s")


if __name__ == "__main__":
    main()
