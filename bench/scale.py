"""One SQLite `refresh --all` against PostgreSQL crawl workers (1, 2, 4), on many hosts.

    python bench/scale.py                          # 2,000 feeds on 200 hosts, median of 3
    python bench/scale.py --feeds 200 --hosts 20 --runs 1 --workers 1,2

The feeds (tests/helpers.py's `generate`: one entry in ten a repeat of the previous feed's,
which is served by another host) are served by a separate process, one threaded HTTP server
per loopback address 127.0.0.2, 127.0.0.3, ... (feed n on host n mod hosts), with ETags and
304s. That process also watches each host: the most requests it answered at once, and the
smallest gap between two requests arriving.

Three phases, each measured `--runs` times (median shown), each from a new database:
- cold: every feed new (all 200s);
- warm 304: every feed fetched again, nothing changed (all 304);
- warm new: every feed has one new post.
SQLite runs `refresh --all` in a child process, and so does PostgreSQL once (the store's own
cost, without the queue); then PostgreSQL runs `--workers` worker processes
(`aggregator worker`), started before the phase, made busy by one tick with every source due.
A phase ends when the outputs are stored (emit waits EMIT_DELAY seconds to batch ingests; the
"stored" column is when the last batch was placed). Per-feed times are each source's fetch,
parse and normalize (the collect step), as logged. After each phase the snapshots of SQLite and
of the workers are compared without their clock fields (ids included).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("AGGREGATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ENTRIES = 10  # per feed


# --- the server process --------------------------------------------------------------------------


def serve(feeds: int, hosts: int) -> None:
    """Run in the server process: serve, print the ports; commands on stdin (`newer`, `stats`)."""
    import hashlib

    from tests.helpers import generate

    lock = threading.Lock()
    published: dict[str, Any] = {}
    watch: dict[str, Any] = {}

    def publish(newer: int) -> None:
        bodies = generate(feeds, ENTRIES, newer=newer)
        etags = {p: '"' + hashlib.md5(b).hexdigest() + '"' for p, b in bodies.items()}
        published.update(bodies=bodies, etags=etags)

    def reset() -> None:
        watch.update(in_flight={}, peak={}, last={}, gap={}, codes={"200": 0, "304": 0})

    publish(0)
    reset()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            host = self.server.server_address[0]
            now = time.perf_counter()
            with lock:
                flight = watch["in_flight"][host] = watch["in_flight"].get(host, 0) + 1
                watch["peak"][host] = max(watch["peak"].get(host, 0), flight)
                if host in watch["last"]:
                    gap = now - watch["last"][host]
                    watch["gap"][host] = min(watch["gap"].get(host, gap), gap)
                watch["last"][host] = now
            try:
                self._answer()
            finally:
                with lock:
                    watch["in_flight"][host] -= 1

        def _answer(self) -> None:
            path = self.path.split("?")[0]
            body = published["bodies"].get(path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            etag = published["etags"][path]
            if self.headers.get("If-None-Match") == etag:
                watch["codes"]["304"] += 1
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            watch["codes"]["200"] += 1
            self.send_response(200)
            kind = "application/rss+xml" if path.endswith(".xml") else "application/atom+xml"
            self.send_header("Content-Type", kind)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ports = []
    for h in range(hosts):
        httpd = ThreadingHTTPServer((f"127.0.0.{h + 2}", 0), Handler)
        httpd.daemon_threads = True
        httpd.request_queue_size = 64
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        ports.append(httpd.server_address[1])
    paths = sorted(published["bodies"], key=lambda p: int(re.sub(r"\D", "", p)))
    print(json.dumps({"ports": ports, "paths": paths}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd == ["newer"]:
            publish(1)
            print("{}", flush=True)
        elif cmd == ["old"]:
            publish(0)
            print("{}", flush=True)
        elif cmd == ["stats"]:
            with lock:
                gaps = list(watch["gap"].values())
                out = {
                    "peak": max(watch["peak"].values(), default=0),
                    "gap_ms": min(gaps) * 1000 if gaps else None,
                    "codes": dict(watch["codes"]),
                }
                reset()
            print(json.dumps(out), flush=True)


# --- the client ----------------------------------------------------------------------------------


class Feeds:
    def __init__(self, feeds: int, hosts: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(feeds), str(hosts)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        info = json.loads(self.ask(None))
        self.ports: list[int] = info["ports"]
        self.paths: list[str] = info["paths"]
        self.hosts = hosts

    def ask(self, command: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def stats(self) -> dict[str, Any]:
        return dict(json.loads(self.ask("stats")))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def write_config(folder: Path, feeds: Feeds, store: str) -> Path:
    lines = [
        "[feed]",
        'title = "Bench"',
        "max_entries = 200",
        "[output]",
        'dir = "out"',
        "[store]",
        store,
        "[fetch]",
        "per_host = 2",
    ]
    for n, path in enumerate(feeds.paths):
        h = n % feeds.hosts
        lines += [
            "[[sources]]",
            f'name = "feed{n}"',
            f'url = "http://127.0.0.{h + 2}:{feeds.ports[h]}{path}"',
            'kind = "feed"',
            'interval = "1h"',
        ]
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "config.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


REFRESH_CHILD = """
import json, sys, time
from aggregator.config import load_config
from aggregator.refresh import refresh
config = load_config(sys.argv[1])
t0 = time.perf_counter()
report = refresh(config, force=True)
wall = time.perf_counter() - t0
print(json.dumps({
    "wall": wall,
    "durations": [r.duration for r in report.results],
    "entries": sum(r.new + r.joined for r in report.results),  # copies stored
    "failed": len(report.failed),
}))
"""


def run_refresh(cfg: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", REFRESH_CHILD, str(cfg)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    result["stored"] = result["wall"]
    return result


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.encode())


def new_database(name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg_admin(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(PG_ADMIN)._replace(path="/" + name))


DURATION = re.compile(
    r": (?:read, \d+ staged|unchanged|error|not-modified|new)[^(]*\((\d+\.\d+) s\)"
)


def run_workers(cfg: Path, url: str, workers: int, log: Path) -> dict[str, Any]:
    """Start `workers` workers, make every source due, tick once; wait for the outputs."""
    import psycopg

    from aggregator.config import load_config
    from aggregator.worker import defer_tick

    config = load_config(cfg)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE sources SET next_due = now() - interval '1 second'")
        before = conn.execute("SELECT count(*) FROM copies").fetchone()
    log_start = log.stat().st_size if log.exists() else 0
    procs = []
    with log.open("ab") as fh:
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "aggregator", "worker", "-c", str(cfg)],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )
    time.sleep(2.0)  # workers started and listening, before the clock starts
    t0 = time.perf_counter()
    defer_tick(config)
    stored = None
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            time.sleep(0.1)
            crawls, staged, jobs, emits = conn.execute(
                """
                SELECT (SELECT count(*) FROM sources WHERE next_due > now()),
                       (SELECT count(*) FROM staged),
                       (SELECT count(*) FROM procrastinate_jobs
                        WHERE status IN ('todo', 'doing') AND task_name <> 'aggregator.emit'),
                       (SELECT count(*) FROM procrastinate_jobs
                        WHERE status IN ('todo', 'doing') AND task_name = 'aggregator.emit')
                """
            ).fetchone() or (0, 0, 0, 0)
            done = crawls == len(config.sources) and staged == 0 and jobs == 0
            if stored is None and done:
                stored = time.perf_counter() - t0
            if done and emits == 0:
                break
            if time.perf_counter() - t0 > 900:
                raise RuntimeError("workers did not finish in 15 minutes; see " + str(log))
        wall = time.perf_counter() - t0
        after = conn.execute("SELECT count(*) FROM copies").fetchone()
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)
    text = log.read_bytes()[log_start:].decode("utf-8", "replace")
    durations = [float(m) for m in DURATION.findall(text)]
    assert before is not None and after is not None
    return {
        "wall": wall,
        "stored": stored,
        "durations": durations,
        "entries": after[0] - before[0],  # copies stored
        "failed": text.count(": error ("),
    }


def comparable(path: Path) -> Any:
    from tests.helpers import without_clock

    return without_clock(json.loads(path.read_text(encoding="utf-8")))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feeds", type=int, default=2000)
    p.add_argument("--hosts", type=int, default=200)
    p.add_argument("--runs", type=int, default=3, help="runs per phase; the median is shown")
    p.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    args = p.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w]
    feeds = Feeds(args.feeds, args.hosts)
    rows: list[str] = []
    same: list[str] = []
    kept: dict[tuple[int, str], Any] = {}  # SQLite's snapshot of each run and phase
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for run in range(args.runs):
                setups = [("sqlite", 0), ("pg-refresh", 0)] + [("pg", w) for w in counts]
                for kind, workers in setups:
                    label = {
                        "sqlite": "SQLite refresh --all",
                        "pg-refresh": "PG refresh --all",
                    }.get(kind, f"PG, {workers} worker")
                    folder = Path(tmp) / f"{kind}{workers}-{run}"
                    if kind == "sqlite":
                        cfg = write_config(folder, feeds, 'path = "agg.db"')
                    else:
                        url = new_database(f"aggbench_{os.getpid()}_{kind[3:]}{workers}_{run}")
                        cfg = write_config(folder, feeds, f'url = "{url}"')
                        subprocess.run(
                            [sys.executable, "-m", "aggregator", "migrate", "-q", "-c", str(cfg)],
                            check=True,
                            cwd=ROOT,
                        )
                    for phase in ("cold", "warm 304", "warm new"):
                        feeds.ask("newer" if phase == "warm new" else "old")
                        feeds.stats()
                        if kind != "pg":
                            got = run_refresh(cfg)
                        else:
                            got = run_workers(cfg, url, workers, folder / "workers.log")
                        seen = feeds.stats()
                        rows.append(
                            json.dumps(
                                {
                                    "setup": label,
                                    "phase": phase,
                                    "run": run,
                                    **got,
                                    **seen,
                                    "durations": None,
                                    "p50": pct(got["durations"], 0.5),
                                    "p99": pct(got["durations"], 0.99),
                                }
                            )
                        )
                        print(rows[-1], flush=True)
                        snap = folder / "out" / "snapshot.json"
                        if kind == "sqlite":
                            kept[run, phase] = comparable(snap)
                        else:
                            verdict = (
                                "same" if kept[run, phase] == comparable(snap) else "DIFFERENT"
                            )
                            same.append(f"run {run + 1}, {label}, {phase}: outputs {verdict}")
                            print(same[-1], flush=True)
                    if kind != "sqlite":
                        name = f"aggbench_{os.getpid()}_{kind[3:]}{workers}_{run}"
                        pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        feeds.close()
    summarize([json.loads(r) for r in rows], args)
    for line in same:
        print(line)


def summarize(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n{args.feeds} feeds x {ENTRIES} entries on {args.hosts} hosts, median of {args.runs}")
    print(
        f"{'setup':<24}{'phase':<10}{'wall s':>8}{'stored s':>9}{'entries/s':>10}{'feeds/s':>9}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'peak':>5}{'gap ms':>8}{'200/304':>11}"
    )
    keys = dict.fromkeys((r["setup"], r["phase"]) for r in rows)
    for setup, phase in keys:
        got = [r for r in rows if r["setup"] == setup and r["phase"] == phase]
        wall = statistics.median(r["wall"] for r in got)
        stored = statistics.median(r["stored"] for r in got)
        entries = statistics.median(r["entries"] for r in got)
        p50 = statistics.median(r["p50"] for r in got) * 1000
        p99 = statistics.median(r["p99"] for r in got) * 1000
        peak = max(r["peak"] for r in got)
        gaps = [r["gap_ms"] for r in got if r["gap_ms"] is not None]
        codes = got[-1]["codes"]
        print(
            f"{setup:<24}{phase:<10}{wall:>8.2f}{stored:>9.2f}{entries / stored:>10.0f}"
            f"{args.feeds / stored:>9.0f}{p50:>8.1f}{p99:>8.1f}{peak:>5}"
            f"{min(gaps) if gaps else float('nan'):>8.2f}{codes['200']:>6}/{codes['304']}"
        )


if __name__ == "__main__":
    main()
