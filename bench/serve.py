"""Benchmark `aggregator serve` on loopback while refreshes run beside it.

    python bench/serve.py [--duration 5] [--connections 16] [--threads 2]

Builds a 100-entry feed from a local RSS file, starts `aggregator serve` in its own process,
and runs a refresh loop in another process (each refresh rewrites the outputs). Then measures,
with wrk when it is installed (else a small multi-process Python client):

  1. full responses of /feed.atom while every refresh changes the feed;
  2. full gzip responses of /feed.atom, same conditions;
  3. 304s for /feed.atom with If-None-Match while refreshes run and find nothing new
     (snapshot.json is still rewritten each time).

Prints requests per second, the 50th and 99th percentile latency, and how many refreshes ran.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ENTRIES = 100

REFRESH_LOOP = r"""
import sys, time
from pathlib import Path
from aggregator.config import load_config
from aggregator.refresh import refresh
config = load_config(sys.argv[1])
source = Path(sys.argv[2])
change = sys.argv[3] == "change"
stop = Path(sys.argv[4])
n = 0
while not stop.exists():
    if change:
        text = source.read_text()
        source.write_text(text.replace("<title>Entry 0", "<title>Entry 0 ", 1))
    refresh(config, force=True)
    n += 1
print(n)
"""


def rss(n: int) -> str:
    items = "".join(
        f"<item><guid>e{i}</guid><title>Entry {i}: a post about something</title>"
        f"<link>https://blog.example.org/posts/{i}</link>"
        f"<pubDate>Mon, {1 + i % 28:02d} Jun 2026 {i % 24:02d}:00:00 GMT</pubDate>"
        f"<description>Post {i} says: {' '.join(f'word{i * 7 + k}' for k in range(60))}"
        "</description></item>"
        for i in range(n)
    )
    return f'<rss version="2.0"><channel><title>bench</title>{items}</channel></rss>'


def setup(folder: Path) -> Path:
    (folder / "feed.xml").write_text(rss(ENTRIES))
    config = folder / "config.toml"
    config.write_text(
        '[feed]\ntitle = "bench"\nmax_entries = 100\n'
        '[[sources]]\nname = "blog"\nurl = "feed.xml"\nkind = "feed"\n'
    )
    subprocess.run(
        [sys.executable, "-m", "aggregator", "refresh", "-q", "-c", str(config)], check=True
    )
    return config


def start_server(config: Path) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "serve", "-c", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r"http://([\d.]+):(\d+)/", line)
    if not m:
        proc.kill()
        raise SystemExit(f"server did not start: {line}")
    # Keep draining its stderr: a full pipe would block the server.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, m.group(1), int(m.group(2))


def etag_of(host: str, port: int) -> str:
    conn = http.client.HTTPConnection(host, port)
    conn.request("GET", "/feed.atom")
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.getheader("ETag") or ""


# --- wrk --------------------------------------------------------------------------------------


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, args: argparse.Namespace, headers: list[str]) -> dict[str, float]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": _ms(*p50.groups()) if p50 else float("nan"),
        "p99": _ms(*p99.groups()) if p99 else float("nan"),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


# --- fallback client --------------------------------------------------------------------------


def _client(job: tuple[str, int, float, list[str]]) -> tuple[int, list[float], int]:
    host, port, duration, headers = job
    hdrs = dict(h.split(": ", 1) for h in headers)
    conn = http.client.HTTPConnection(host, port)
    lat: list[float] = []
    bad = 0
    end = time.perf_counter() + duration
    while (t0 := time.perf_counter()) < end:
        conn.request("GET", "/feed.atom", headers=hdrs)
        resp = conn.getresponse()
        resp.read()
        lat.append(time.perf_counter() - t0)
        if resp.status not in (200, 304):
            bad += 1
    conn.close()
    return len(lat), lat, bad


def run_python(
    host: str, port: int, args: argparse.Namespace, headers: list[str]
) -> dict[str, float]:
    with multiprocessing.Pool(args.connections) as pool:
        results = pool.map(_client, [(host, port, args.duration, headers)] * args.connections)
    lat = sorted(x for _, lats, _ in results for x in lats)
    return {
        "rps": sum(n for n, _, _ in results) / args.duration,
        "p50": statistics.median(lat) * 1000,
        "p99": lat[int(len(lat) * 0.99)] * 1000,
        "errors": float(sum(b for _, _, b in results)),
    }


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--no-refresh", action="store_true", help="baseline: no refresh loop beside the server"
    )
    args = parser.parse_args()
    tool = "wrk" if shutil.which("wrk") else "python"
    with tempfile.TemporaryDirectory(prefix="aggregator-bench-") as tmp:
        folder = Path(tmp)
        config = setup(folder)
        size = (folder / "public" / "feed.atom").stat().st_size
        server, host, port = start_server(config)
        url = f"http://{host}:{port}/feed.atom"
        print(
            f"aggregator serve on {host}:{port}, feed.atom {ENTRIES} entries, {size} bytes; "
            f"client: {tool}, {args.connections} connections, {args.duration}s each; "
            f"{os.cpu_count()} CPUs"
        )
        try:
            phases = [
                ("full 200 (feed changing)", "change", []),
                ("full 200 gzip (feed changing)", "change", ["Accept-Encoding: gzip"]),
                ("304 If-None-Match", "same", None),
            ]
            if args.no_refresh:
                phases = [(label.replace(" (feed changing)", ""), m, h) for label, m, h in phases]
            for label, mode, headers in phases:
                stop = folder / "stop"
                stop.unlink(missing_ok=True)
                loop = None
                if not args.no_refresh:
                    loop = subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            REFRESH_LOOP,
                            str(config),
                            str(folder / "feed.xml"),
                            mode,
                            str(stop),
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    time.sleep(0.5)  # let the loop get going (and the 304 phase's feed settle)
                if headers is None:
                    headers = [f"If-None-Match: {etag_of(host, port)}"]
                if tool == "wrk":
                    r = run_wrk(url, args, headers)
                else:
                    r = run_python(host, port, args, headers)
                stop.touch()
                refreshes = 0
                if loop is not None:
                    refreshes = int((loop.communicate(timeout=60)[0] or "0").strip() or 0)
                print(
                    f"{label:32s} {r['rps']:9.0f} req/s   p50 {r['p50']:6.2f} ms   "
                    f"p99 {r['p99']:6.2f} ms   errors {int(r['errors'])}   "
                    f"refreshes beside: {refreshes}"
                )
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
