"""A synthetic but realistic feed workload, and a local server that serves it.

N feeds x M entries, alternating RSS 2.0 and Atom 1.0. Each entry carries an HTML summary of
2-4 KB mixing English and Chinese paragraphs, a code block and an image. About one entry in
ten is a repeat of an entry of the previous feed (same link, its own guid), as happens when
a post is syndicated to several places.

With `newer=1`, each feed has published one more post since: the same feed with a new entry
on top and its oldest one gone (a crawl that finds one new item per feed).

The server answers 304 to If-None-Match / If-Modified-Since while `mode` is "conditional", and
ignores validators (sending the same bytes with status 200) while it is "ignore".
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

_EN = [
    "the",
    "model",
    "training",
    "data",
    "learning",
    "rate",
    "warmup",
    "schedule",
    "transformer",
    "layer",
    "attention",
    "gradient",
    "batch",
    "size",
    "memory",
    "cache",
    "latency",
    "throughput",
    "benchmark",
    "parser",
    "feed",
    "entry",
    "server",
    "client",
    "request",
    "response",
    "database",
    "index",
    "query",
    "storage",
    "network",
    "kernel",
    "thread",
    "process",
    "pool",
    "compile",
    "runtime",
    "profile",
    "measure",
    "result",
    "figure",
    "table",
    "paper",
    "draft",
    "note",
]
_ZH = (
    "我们在这篇文章中讨论了模型训练的学习率预热策略以及注意力层的实现细节，"
    "实验结果表明批量大小对内存占用和吞吐量有显著影响。数据库索引的设计决定了查询延迟，"
    "而线程池和进程池的选择取决于任务是受限于计算还是输入输出。本文最后给出了基准测试的数字。"
)
LAST_MODIFIED = "Mon, 02 Nov 2026 10:00:00 GMT"
BASE_DATE = datetime(2026, 11, 1, tzinfo=UTC)


def _vocabulary(size: int, seed: int = 11) -> list[str]:
    """Pseudo-words from syllables: real prose draws on thousands of words, not a few dozen
    (with a few dozen, every summary shares most of its character n-grams with every other,
    which no real pair of posts does)."""
    rng = random.Random(seed)
    onsets = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
    codas = ["", "n", "r", "s", "t", "l", "nd", "st"]
    words = set(_EN)
    while len(words) < size:
        syllables = rng.randint(1, 3)
        words.add(
            "".join(
                rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                for _ in range(syllables)
            )
        )
    ordered = sorted(words)
    rng.shuffle(ordered)  # which words are common is arbitrary, not alphabetical
    return ordered


_VOCAB = _vocabulary(5000)
# Zipf-like weights: common words recur, as in prose; the long tail keeps posts distinct.
_WEIGHTS = [1.0 / (rank + 1) for rank in range(len(_VOCAB))]
_HANZI = "".join(sorted(set(_ZH))) + "".join(chr(c) for c in range(0x4E00, 0x4E00 + 2500, 3))


def _english(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choices(_VOCAB, weights=_WEIGHTS, k=words))
    return text[0].upper() + text[1:] + "."


def _chinese(rng: random.Random, chars: int) -> str:
    # A sentence of the fixed paragraph for its punctuation and common words, then characters
    # drawn from a few thousand, so that two posts' Chinese text differs as real posts do.
    start = rng.randrange(len(_ZH) - 20)
    head = _ZH[start : start + 20]
    tail = "".join(rng.choice(_HANZI) for _ in range(max(0, chars - len(head))))
    return (head + tail)[:chars]


def summary_html(rng: random.Random) -> str:
    """An HTML summary of 2-4 KB: paragraphs in two languages, code, an image, a link."""
    target = rng.randint(2048, 4096)
    parts: list[str] = []
    size = 0
    n = 0
    while size < target:
        n += 1
        if n % 4 == 1:
            block = f"<p>{_english(rng, rng.randint(25, 50))} <a href='/post/{n}'>more</a></p>"
        elif n % 4 == 2:
            block = f"<p>{_chinese(rng, rng.randint(60, 140))}</p>"
        elif n % 4 == 3:
            block = (
                "<pre><code class='language-python'>def step(x, lr=0.001):\n"
                "    return x - lr * grad(x)  # &lt;update&gt;\n</code></pre>"
            )
        else:
            block = (
                f"<figure><img src='https://img.example.org/{rng.randrange(10**6)}.png' "
                f"alt='figure {n}' width='640'><figcaption>{_english(rng, 8)}</figcaption>"
                "</figure>"
            )
        parts.append(block)
        size += len(block.encode("utf-8"))
    return "".join(parts)


def _entry(feed: int, i: int, rng: random.Random) -> dict[str, Any]:
    when = BASE_DATE - timedelta(hours=feed * 7 + i * 3)
    return {
        "guid": f"https://feed{feed}.example.org/posts/{i}",
        "link": f"https://feed{feed}.example.org/posts/{i}",
        "title": f"{_english(rng, 6)[:-1]} {_chinese(rng, 6)} #{feed}-{i}",
        "summary": summary_html(rng),
        "date": when,
        "author": f"Author {feed % 17}",
        "tags": (rng.choice(_EN), rng.choice(_EN)),
    }


def _rss(feed: int, entries: list[dict[str, Any]]) -> str:
    items = "".join(
        "<item>"
        f"<title>{escape(e['title'])}</title><link>{escape(e['link'])}</link>"
        f"<guid isPermaLink='false'>{escape(e['guid'])}</guid>"
        f"<pubDate>{format_datetime(e['date'])}</pubDate>"
        f"<author>author{feed}@example.org ({escape(e['author'])})</author>"
        + "".join(f"<category>{escape(t)}</category>" for t in e["tags"])
        + f"<description>{escape(e['summary'])}</description></item>\n"
        for e in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>Feed {feed}</title><link>https://feed{feed}.example.org/</link>"
        f"<description>Feed number {feed}</description>\n{items}</channel></rss>\n"
    )


def _atom(feed: int, entries: list[dict[str, Any]]) -> str:
    items = "".join(
        "<entry>"
        f"<title>{escape(e['title'])}</title><link rel='alternate' href='{escape(e['link'])}'/>"
        f"<id>{escape(e['guid'])}</id><updated>{e['date'].isoformat()}</updated>"
        f"<published>{e['date'].isoformat()}</published>"
        f"<author><name>{escape(e['author'])}</name></author>"
        + "".join(f"<category term='{escape(t)}'/>" for t in e["tags"])
        + f"<summary type='html'>{escape(e['summary'])}</summary></entry>\n"
        for e in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>Feed {feed}</title><id>https://feed{feed}.example.org/</id>"
        f"<link href='https://feed{feed}.example.org/'/>"
        f"<updated>{BASE_DATE.isoformat()}</updated>\n{items}</feed>\n"
    )


def generate(feeds: int, entries: int, seed: int = 6, newer: int = 0) -> dict[str, bytes]:
    """Path -> body for every feed of the workload; `newer` posts published since on top."""
    rng = random.Random(seed)
    bodies: dict[str, bytes] = {}
    previous: list[dict[str, Any]] = []
    for f in range(feeds):
        own = [_entry(f, i, rng) for i in range(entries)]
        for i in range(5, entries, 10):  # one in ten: a copy of the previous feed's own post
            if previous:
                # One of its own posts (not a repost itself), which that feed did publish.
                copy = dict(previous[(i + 1) % len(previous)])
                copy["guid"] = f"tag:feed{f}.example.org,2026:repost-{i}"
                own[i] = copy
        previous = own
        # Newer posts draw from a generator of their own: the older entries stay byte-equal.
        later = random.Random(seed * 100_003 + f)
        shown = [_entry(f, -1 - i, later) for i in reversed(range(newer))] + own
        shown = shown[:entries]
        if f % 2 == 0:
            bodies[f"/feed{f}.xml"] = _rss(f, shown).encode("utf-8")
        else:
            bodies[f"/feed{f}.atom"] = _atom(f, shown).encode("utf-8")
    return bodies


class FeedServer:
    """A threaded HTTP/1.1 server on 127.0.0.1:0 for the generated bodies."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.publish(bodies)
        self.mode = "conditional"
        self.counts = {"200": 0, "304": 0}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                body = server.bodies.get(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = server.etags[path]
                fresh = self.headers.get("If-None-Match") == etag or (
                    self.headers.get("If-Modified-Since") == LAST_MODIFIED
                )
                if server.mode == "conditional" and fresh:
                    server.counts["304"] += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                server.counts["200"] += 1
                self.send_response(200)
                kind = "application/rss+xml" if path.endswith(".xml") else "application/atom+xml"
                self.send_header("Content-Type", kind + "; charset=utf-8")
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", LAST_MODIFIED)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def publish(self, bodies: dict[str, bytes]) -> None:
        """Serve these bodies from now on (the same paths)."""
        self.bodies = bodies
        self.etags = {p: '"' + hashlib.md5(b).hexdigest() + '"' for p, b in bodies.items()}

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def urls(self) -> list[str]:
        return [self.base + p for p in self.bodies]


@contextmanager
def serving(bodies: dict[str, bytes]) -> Iterator[FeedServer]:
    server = FeedServer(bodies)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
