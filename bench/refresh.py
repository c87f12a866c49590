"""Refresh N generated feeds served from many loopback addresses; print wall time vs ideal.

    python bench/refresh.py                       # 1000 feeds, 100 ms latency, then 0 ms
    python bench/refresh.py --feeds 200 --latency 50 --hosts 32

The feeds are served by a separate process (so that the servers do not compete with the
client for the GIL), one threaded HTTP server per address 127.0.0.2, 127.0.0.3, ... (all of
127.0.0.0/8 is loopback, so the per-host limit applies per address as it would per site).
Each answers after `--latency` ms, with an ETag, and 304 when the client sends it back.

A first refresh stores every feed (200s); the measured refresh then finds every source
answering 304. Ideal = N x latency / concurrency, concurrency = min(max_workers,
per_host x hosts). Targets: within 1.3x of ideal at 100 ms; under 2 s with no latency.
"""

from __future__ import annotations

import argparse
import json
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


def feed_body(n: int) -> bytes:
    items = "".join(
        f"<item><guid isPermaLink='false'>f{n}-{i}</guid><title>Feed {n} post {i}</title>"
        f"<link>https://site{n}.example/posts/{i}</link>"
        f"<pubDate>Tue, 03 Nov 2026 0{i}:00:00 +0000</pubDate>"
        f"<description>Post {i} of feed {n}: a few words about it.</description></item>"
        for i in range(5)
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>Feed {n}</title><link>https://site{n}.example/</link>{items}</channel></rss>"
    ).encode()


def serve(hosts: int, latency: float) -> None:
    """Run in the server process: start the servers, print their ports, wait for stdin EOF."""
    latency_box = [latency]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if latency_box[0]:
                time.sleep(latency_box[0])
            n = int(self.path.strip("/").split(".")[0].removeprefix("feed"))
            etag = f'"v1-{n}"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = feed_body(n)
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ports = []
    for h in range(hosts):
        httpd = ThreadingHTTPServer((f"127.0.0.{h + 2}", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        ports.append(httpd.server_address[1])
    print(json.dumps(ports), flush=True)
    for line in sys.stdin:  # "latency <seconds>" changes the latency; EOF ends
        parts = line.split()
        if parts and parts[0] == "latency":
            latency_box[0] = float(parts[1])
            print("ok", flush=True)


def run(args: argparse.Namespace) -> None:
    from aggregator.config import load_config
    from aggregator.refresh import refresh

    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(args.hosts), str(args.latency / 1000)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ports = json.loads(proc.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            lines = [
                "[feed]",
                'title = "Bench"',
                "max_entries = 100",
                "[output]",
                f'dir = "{tmp}/out"',
                "[store]",
                f'path = "{tmp}/bench.db"',
                "[fetch]",
                f"max_workers = {args.workers}",
                f"per_host = {args.per_host}",
            ]
            for n in range(args.feeds):
                h = n % args.hosts
                lines += [
                    "[[sources]]",
                    f'name = "feed{n}"',
                    f'url = "http://127.0.0.{h + 2}:{ports[h]}/feed{n}.xml"',
                    'kind = "feed"',
                ]
            cfg = Path(tmp) / "config.toml"
            cfg.write_text("\n".join(lines) + "\n")
            config = load_config(cfg)
            concurrency = min(args.workers, args.per_host * args.hosts)

            t0 = time.perf_counter()
            first = refresh(config, force=True)
            t_first = time.perf_counter() - t0
            assert not first.failed, first.failed[:3]
            print(
                f"first refresh (all 200, {args.feeds} feeds x 5 entries): {t_first:.2f} s",
                flush=True,
            )

            for latency_ms in (args.latency, 0.0) if args.latency else (0.0,):
                proc.stdin.write(f"latency {latency_ms / 1000}\n")
                proc.stdin.flush()
                proc.stdout.readline()
                best = None
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    report = refresh(config, force=True)
                    wall = time.perf_counter() - t0
                    assert not report.failed, report.failed[:3]
                    statuses = {r.status for r in report.results}
                    assert statuses == {304}, statuses
                    best = wall if best is None else min(best, wall)
                assert best is not None
                ideal = args.feeds * (latency_ms / 1000) / concurrency
                ratio = f"{best / ideal:.2f}x ideal ({ideal:.2f} s)" if ideal else "ideal 0 s"
                print(
                    f"all-304 refresh: {args.feeds} feeds, {args.hosts} hosts, latency "
                    f"{latency_ms:g} ms, concurrency {concurrency}: wall {best:.2f} s, {ratio}",
                    flush=True,
                )
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), float(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--latency", type=float, default=100.0, help="ms added per response")
    p.add_argument("--hosts", type=int, default=64, help="loopback addresses to serve from")
    p.add_argument("--workers", type=int, default=16, help="[fetch] max_workers")
    p.add_argument("--per-host", type=int, default=2, help="[fetch] per_host")
    p.add_argument("--repeat", type=int, default=1, help="measured runs; the best is shown")
    run(p.parse_args())


if __name__ == "__main__":
    main()
