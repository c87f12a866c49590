"""Tests for aggregator.parse.text: plain text captures of a "LATEST UPDATES" list."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aggregator.errors import ParseError
from aggregator.models import ParsedDocument, Source
from aggregator.parse.text import classify_line, parse_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "text"
SEEDS = ROOT.parent / "shared" / "seeds"
HEADERS = Source(name="x", url="/x").header_lines  # the configured default
PAGER = re.compile(r"^\d+(\s+\d+)*$")


def _parse(text: str | bytes, **kwargs: Any) -> ParsedDocument:
    body = text.encode("utf-8") if isinstance(text, str) else text
    kwargs.setdefault("header_lines", HEADERS)
    return parse_text(body, url="/captures/home.txt", headers={}, source="capture", **kwargs)


def _long(prefix: str) -> str:
    """An excerpt-like line: long and with sentence punctuation."""
    return f"{prefix}: a line long enough to be an excerpt, with a full stop at the end."


# --------------------------------------------------------------------------- data-driven


def _cases() -> list[Path]:
    return sorted(DATA.glob("*.json"))


@pytest.mark.parametrize("spec_path", _cases(), ids=lambda p: p.stem)
def test_text_fixture(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    body = spec_path.with_suffix(".txt").read_bytes()
    header_lines = tuple(spec.get("header_lines", HEADERS))
    if "error" in spec:
        with pytest.raises(ParseError) as caught:
            _parse(body, header_lines=header_lines)
        for fragment in spec["error"]:
            assert fragment in str(caught.value)
        return
    doc = _parse(body, header_lines=header_lines)
    assert doc.kind == "text"
    assert len(doc.items) == len(spec["expect"]["items"])
    for item, want in zip(doc.items, spec["expect"]["items"], strict=True):
        assert (item.guid, item.title, item.link) == (None, None, None)
        assert item.content_is_html is False
        assert item.position == want["position"]
        if "content" in want:
            assert item.content == want["content"]
        if "content_startswith" in want:
            assert item.content.startswith(want["content_startswith"])
        assert list(item.categories) == want["categories"]
        published = item.published.isoformat() if item.published else None
        assert published == want["published"]


# --------------------------------------------------------------------------- explicit


def test_headers_and_pagers_are_skipped() -> None:
    text = "\n".join(
        [
            "INCOMING TRANSMISSION",
            "",
            "   latest updates   ",
            _long("one"),
            "1 2 3",
            _long("two"),
            "« Prev 1 2 ... 9 Next »",
            "下一页",
        ]
    )
    doc = _parse(text)
    assert [i.content for i in doc.items] == [_long("one"), _long("two")]
    assert [i.position for i in doc.items] == [0, 1]


def test_label_and_date_attach_to_the_following_entry_only() -> None:
    text = "\n".join(["Python", "2026-01-11", _long("first"), _long("second"), _long("third")])
    doc = _parse(text)
    assert [i.categories for i in doc.items] == [("Python",), (), ()]
    assert [i.published for i in doc.items] == [datetime(2026, 1, 11, tzinfo=UTC), None, None]


def test_label_alone_and_date_alone() -> None:
    text = "\n".join(["Go", _long("a"), "2026/03/04", _long("b")])
    doc = _parse(text)
    assert doc.items[0].categories == ("Go",) and doc.items[0].published is None
    assert doc.items[1].categories == () and doc.items[1].published == datetime(
        2026, 3, 4, tzinfo=UTC
    )


def test_date_before_label_also_attaches() -> None:
    doc = _parse("\n".join(["2026-02-01", "数据库", _long("x")]))
    assert doc.items[0].categories == ("数据库",)
    assert doc.items[0].published == datetime(2026, 2, 1, tzinfo=UTC)


def test_label_or_date_before_a_pager_is_dropped() -> None:
    doc = _parse("\n".join([_long("a"), "Rust", "2026-01-02", "1 2", _long("b")]))
    assert [i.categories for i in doc.items] == [(), ()]
    assert [i.published for i in doc.items] == [None, None]


def test_invalid_date_line_is_not_an_entry() -> None:
    doc = _parse("\n".join(["2026-13-45", _long("a")]))
    assert len(doc.items) == 1
    assert doc.items[0].published is None


def test_capture_with_only_headers_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="no entries found in the text capture") as caught:
        _parse("INCOMING TRANSMISSION\n\nLATEST UPDATES\n")
    assert caught.value.source == "capture"


def test_empty_body_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="no entries"):
        _parse(b"")


def test_binary_body_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="binary"):
        _parse(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")


def test_max_items_caps_entries_and_warns() -> None:
    doc = _parse("\n".join(_long(str(n)) for n in range(5)), max_items=3)
    assert len(doc.items) == 3
    assert doc.warnings and "3" in doc.warnings[0]


def test_unicode_line_separators_do_not_split_an_entry() -> None:
    line = _long("one") + "\u2028" + "continued on the same line."
    assert [i.content for i in _parse(line).items] == [line]


@pytest.mark.parametrize(
    ("line", "published"),
    [
        ("2026-01-11", datetime(2026, 1, 11, tzinfo=UTC)),
        ("2026年1月11日", datetime(2026, 1, 11, tzinfo=UTC)),
        ("Jan 11, 2026", datetime(2026, 1, 11, tzinfo=UTC)),
        ("11 January 2026", datetime(2026, 1, 11, tzinfo=UTC)),
        ("2026-01-11 08:30", datetime(2026, 1, 11, 8, 30, tzinfo=UTC)),
        ("2026-02-30", None),  # a date line, but no such day: it dates nothing
    ],
)
def test_date_lines_in_every_shape_the_date_parser_reads(
    line: str, published: datetime | None
) -> None:
    doc = _parse("\n".join(["Python", line, _long("one"), _long("two")]))
    assert [(i.categories, i.published) for i in doc.items] == [
        (("Python",), published),
        ((), None),
    ]


def test_document_link_only_for_web_urls() -> None:
    assert _parse(_long("a")).link is None
    doc = parse_text(
        _long("a").encode(),
        url="https://example.org/capture.txt",
        headers={},
        source="s",
        header_lines=(),
    )
    assert doc.link == "https://example.org/capture.txt"


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("", "blank"),
        ("LATEST UPDATES", "header"),
        ("1 2", "pager"),
        ("12", "pager"),
        ("1 2 ... 9 Next", "pager"),
        ("下一页", "pager"),
        ("2026-01-11", "date"),
        ("2026/01/11", "date"),
        ("Python", "label"),
        ("Node.js", "label"),
        ("深度学习", "label"),
        ("Hello.", "entry"),
        ("你好，世界", "entry"),
        ("1.深度学习为什么需要偏置项", "entry"),
        ("C++", "label"),
        ("A title that is far too long to be a category label", "entry"),
    ],
)
def test_classify_line(line: str, kind: str) -> None:
    assert classify_line(line, frozenset({"latest updates"})) == kind


# --------------------------------------------------------------------------- examples


def test_example_capture() -> None:
    doc = _parse((ROOT / "examples" / "capture.txt").read_bytes())
    assert len(doc.items) == 10
    labelled = [i for i in doc.items if i.categories]
    assert [(i.categories, i.published) for i in labelled] == [
        (("PyTorch",), datetime(2026, 2, 7, tzinfo=UTC))
    ]
    assert all(200 <= len(i.content) <= 800 for i in doc.items)
    assert any(i.content.endswith("...") for i in doc.items)
    assert any("[code]" in i.content for i in doc.items)
    assert any("[formula]" in i.content for i in doc.items)


# --------------------------------------------------------------------------- real seeds


def _seed_files() -> list[Path]:
    return sorted(SEEDS.glob("*.txt")) if SEEDS.is_dir() else []


@pytest.mark.skipif(not _seed_files(), reason="../shared/seeds is not present")
@pytest.mark.parametrize("seed", _seed_files(), ids=lambda p: p.name)
def test_real_seed_captures(seed: Path) -> None:
    lines = [line.strip() for line in seed.read_text(encoding="utf-8").split("\n")]
    headers = {h.casefold() for h in HEADERS}
    pair_at = {i for i in range(len(lines) - 1) if lines[i : i + 2] == ["Python", "2026-01-11"]}
    expected = [
        line
        for i, line in enumerate(lines)
        if line
        and line.casefold() not in headers
        and not PAGER.match(line)
        and i not in pair_at
        and i - 1 not in pair_at
    ]
    doc = _parse(seed.read_bytes())
    assert [i.content for i in doc.items] == expected
    assert [i.position for i in doc.items] == list(range(len(expected)))
    for index in sorted(pair_at):
        following = lines[index + 2]
        item = doc.items[expected.index(following)]
        assert item.categories == ("Python",)
        assert item.published == datetime(2026, 1, 11, tzinfo=UTC)
    tagged = [i for i in doc.items if i.categories or i.published]
    assert len(tagged) == len(pair_at)
