"""Profile aggregator's first refresh of the vs_reader workload with py-spy (all threads).

    python bench/profile_refresh.py [--feeds 200] [--entries 50] [--top 30]

The feeds are served from a separate process so that only aggregator is sampled. py-spy
samples every thread (and, with --subprocesses, the parse workers); the collapsed stacks are
folded into a table of functions by inclusive and by self samples.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import generate, serving


def _serve(feeds: int, entries: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    with serving(generate(feeds, entries)) as server:
        queue.put(server.urls())
        time.sleep(3600)


def inner(workdir: str, urls_file: str) -> None:
    from vs_reader import run_aggregator

    urls = json.loads(Path(urls_file).read_text())
    import os

    os.chdir(workdir)
    print(json.dumps(run_aggregator(Path(workdir), urls)))


def fold(raw: Path, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split("/")[-1] for f in stack.split(";") if f]
        for f in set(frames):
            inclusive[f] += n
        if frames:
            own[frames[-1]] += n
    print(f"{total} samples")
    print(f"{'incl%':>6} {'self%':>6}  function (file:line)")
    for f, n in inclusive.most_common(top):
        print(f"{100 * n / total:6.1f} {100 * own[f] / total:6.1f}  {f}")
    print("top by self time:")
    for f, n in own.most_common(top // 2):
        print(f"{100 * inclusive[f] / total:6.1f} {100 * n / total:6.1f}  {f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--inner", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(*args.inner)
        return
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    proc = multiprocessing.Process(target=_serve, args=(args.feeds, args.entries, queue))
    proc.start()
    try:
        urls = queue.get(timeout=300)
        with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
            urls_file = Path(tmp) / "urls.json"
            urls_file.write_text(json.dumps(urls))
            raw = Path(tmp) / "profile.txt"
            cmd = ["py-spy", "record", "--format", "raw", "--subprocesses", "-r", "200"]
            cmd += ["-o", str(raw), "--", sys.executable, __file__, "--inner", tmp, str(urls_file)]
            subprocess.run(cmd, check=True, capture_output=True)
            fold(raw, args.top)
    finally:
        proc.terminate()
        proc.join()


if __name__ == "__main__":
    main()
