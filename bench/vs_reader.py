"""aggregator against lemon24/reader on the same local workload, side by side.

    python bench/vs_reader.py [--feeds 200] [--entries 50] [--tools aggregator,reader]

Four scenarios, each run by both tools in the same run, each tool's refresh in its own
subprocess (so the two never share a heap, and ru_maxrss is that tool's own peak):

1. first:     the first refresh, into an empty store;
2. not-mod:   a second refresh, the server answering 304 to the validators;
3. same-body: a second refresh, the server ignoring validators and sending the same bytes;
4. one-new:   a third refresh, every feed with one new post on top (and its oldest gone):
              each body is new, so both tools read every feed, but one entry in 50 is new.

Printed per scenario and tool: wall time of the refresh call, entries per second (entries in
the workload / wall time) and peak RSS (the process and, for aggregator, its worker
processes); then the ratio aggregator / reader of entries per second. Needs the bench extra:
pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import generate, serving

WORKERS = 16  # fetch threads, the same for both tools
SCENARIOS = (  # name, label, server mode, posts published since the first refresh
    ("first", "first refresh, empty store", "conditional", 0),
    ("not-mod", "second refresh, all 304", "conditional", 0),
    ("same-body", "second refresh, same bytes", "ignore", 0),
    ("one-new", "third refresh, one new each", "ignore", 1),
)


# --- the refresh, in a subprocess ------------------------------------------------------------


def run_aggregator(workdir: Path, urls: list[str]) -> dict[str, object]:
    from aggregator.config import load_config
    from aggregator.refresh import refresh

    config_path = workdir / "config.toml"
    if not config_path.exists():
        lines = [
            "[feed]",
            'title = "Bench"',
            'link = "https://bench.example.org/"',
            "max_entries = 100",
            "[output]",
            'dir = "public"',
            "[store]",
            'path = "aggregator.db"',
            "[fetch]",
            f"max_workers = {WORKERS}",
            f"per_host = {WORKERS}",  # every feed is on 127.0.0.1
        ]
        for i, url in enumerate(urls):
            lines += ["[[sources]]", f'name = "feed{i}"', f'url = "{url}"', 'kind = "feed"']
        config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = load_config(config_path)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    report = refresh(config, force=True)
    seconds = time.perf_counter() - t0
    failed = [f"{r.source}: {r.error}" for r in report.failed]
    return {
        "seconds": seconds,
        "new": sum(r.new + r.joined for r in report.results),
        "errors": failed[:3],
        "cpu_refresh": _cpu() - cpu0,
    }


def run_reader(workdir: Path, urls: list[str]) -> dict[str, object]:
    from reader import make_reader

    reader = make_reader(str(workdir / "reader.sqlite"))
    for url in urls:
        reader.add_feed(url, exist_ok=True)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    results = list(reader.update_feeds_iter(workers=WORKERS, scheduled=False))
    seconds = time.perf_counter() - t0
    errors = [f"{r.url}: {r.error}" for r in results if r.error is not None]
    new = sum(r.updated_feed.new for r in results if r.updated_feed is not None)
    reader.close()
    return {"seconds": seconds, "new": new, "errors": errors[:3], "cpu_refresh": _cpu() - cpu0}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the parse workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def child(tool: str, workdir: str, urls_file: str) -> None:
    urls = json.loads(Path(urls_file).read_text())
    os.chdir(workdir)
    run = run_aggregator if tool == "aggregator" else run_reader
    out = run(Path(workdir), urls)
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Linux: KiB; the largest worker's peak, if any, on top (shared pages counted twice)
    out["maxrss_mb"] = (own.ru_maxrss + kids.ru_maxrss) / 1024
    out["cpu"] = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    print(json.dumps(out))


# --- the orchestration -----------------------------------------------------------------------


def measure(tool: str, workdir: Path, urls_file: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", tool, str(workdir), str(urls_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--tools", default="aggregator,reader")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    tools = [t for t in args.tools.split(",") if t]
    total = args.feeds * args.entries
    bodies = generate(args.feeds, args.entries)
    size = sum(len(b) for b in bodies.values())
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (other work slows both tools)")
    print(
        f"workload: {args.feeds} feeds x {args.entries} entries = {total} entries, "
        f"{size / 1e6:.1f} MB ({size / len(bodies) / 1024:.0f} KB per feed); "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )
    results: dict[tuple[str, str], dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="vs-reader-") as tmp, serving(bodies) as server:
        urls_file = Path(tmp) / "urls.json"
        urls_file.write_text(json.dumps(server.urls()))
        for tool in tools:
            (Path(tmp) / tool).mkdir()
        for scenario, label, mode, newer in SCENARIOS:
            server.mode = mode
            if newer:
                server.publish(generate(args.feeds, args.entries, newer=newer))
            for tool in tools:
                r = measure(tool, Path(tmp) / tool, urls_file)
                results[(scenario, tool)] = r
                seconds = float(r["seconds"])  # type: ignore[arg-type]
                errs = f"  errors: {r['errors']}" if r["errors"] else ""
                print(
                    f"{label:<28} {tool:<11} {seconds:8.2f} s {total / seconds:10.0f} entries/s "
                    f"{float(r['maxrss_mb']):7.0f} MB peak "  # type: ignore[arg-type]
                    f"{float(r['cpu_refresh']):7.2f} s CPU  new={r['new']}{errs}",  # type: ignore[arg-type]
                    flush=True,
                )
    if set(tools) >= {"aggregator", "reader"}:
        print("ratios aggregator / reader (entries per second, higher is better):")
        for scenario, label, _, _ in SCENARIOS:
            a = float(results[(scenario, "aggregator")]["seconds"])  # type: ignore[arg-type]
            b = float(results[(scenario, "reader")]["seconds"])  # type: ignore[arg-type]
            print(f"  {label:<28} {b / a:8.1f}x")


if __name__ == "__main__":
    main()
