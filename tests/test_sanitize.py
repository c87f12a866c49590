"""The sanitizer of full content, case by case (tests/data/sanitize: one small file per case,
its description and expected output in a leading comment, as in feedparser's corpus)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aggregator.sanitize import sanitize_html
from tests.helpers import DATA

CASES = sorted((DATA / "sanitize").glob("*.html"))
BASE = "https://origin.example/2026/03/consistent-hashing"  # the entry's own link
_HEADER = re.compile(r"\A<!-- Description: (.*?)\n\s*Expect: (.*?)\n-->\n(.*)\Z", re.DOTALL)


def _case(path: Path) -> tuple[str, str, str]:
    found = _HEADER.match(path.read_text(encoding="utf-8"))
    assert found, f"{path.name}: no Description/Expect header"
    description, expected, given = found.groups()
    return description, expected, given.strip()


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_sanitize_case(path: Path) -> None:
    description, expected, given = _case(path)
    assert sanitize_html(given, BASE) == expected, description


def test_the_corpus_is_there() -> None:
    assert len(CASES) >= 20


def test_without_a_base_relative_links_are_dropped_not_guessed() -> None:
    assert sanitize_html('<a href="/x">x</a><img src="y.png">', None) == (
        '<a rel="noopener noreferrer nofollow">x</a><img>'
    )
    assert sanitize_html('<img src="y.png">', "file:///etc/passwd") == "<img>"
