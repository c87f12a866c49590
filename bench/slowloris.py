"""How long a reader waits for /feed.atom while a slow client holds connections.

    python bench/slowloris.py [--connections 300] [--every 1.0] [--readers 20]

Serves a small output folder with `aggregator.serve.Server` on loopback, starts a slowloris
client from 127.0.0.2 (a request line, then one header line per connection every `--every`
seconds, never finishing; closed connections are reopened), then sends `--readers` GETs for
/feed.atom one after another from 127.0.0.1 and prints each one's time, the slowest, and how
many connections the slow client opened.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.serve import Server
from tests.helpers import Slowloris

FEED = b'<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"/>\n'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--readers", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "feed.atom").write_bytes(FEED)
        srv = Server(Path(tmp), port=0).start()
        slow = Slowloris(srv.host, srv.port, args.connections, args.every).start()
        times = []
        try:
            for _ in range(args.readers):
                start = time.perf_counter()
                conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
                conn.request("GET", "/feed.atom")
                status = conn.getresponse().status
                conn.close()
                took = time.perf_counter() - start
                times.append(took)
                print(f"GET /feed.atom -> {status} in {took * 1000:.1f} ms")
                time.sleep(0.25)
        finally:
            slow.stop()
            srv.stop()
        print(
            f"slow client: {args.connections} connections wanted, {slow.opened} opened; "
            f"readers: {len(times)}, slowest {max(times) * 1000:.1f} ms, "
            f"median {sorted(times)[len(times) // 2] * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
