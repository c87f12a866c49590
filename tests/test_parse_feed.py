"""The feed parser stage, with the real feedparser.

tests/data/feeds/ is a corpus in the style of feedparser's own: every input file sits next
to `<name>.expected.json`, which holds the request (URL and headers) and the expected
document fields and items (dates as ISO 8601 strings). One parametrized test reads them all.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import pytest

from aggregator.errors import ParseError
from aggregator.models import ParsedDocument, RawItem
from aggregator.parse.feed import parse_feed
from aggregator.parse.fields import split_person
from aggregator.parse.sniff import sniff

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "feeds"
EXAMPLES = ROOT / "examples"
URL = "https://feeds.example.test/feed.xml"
RSS = {"content-type": "application/rss+xml"}
SHARED_TITLE = "Learning-rate warmup, measured on a toy transformer"


def _parse(body: bytes, headers: dict[str, str] | None = None, **kwargs: Any) -> ParsedDocument:
    return parse_feed(body, url=URL, headers=headers or RSS, source="test", **kwargs)


def _rss(items: str, channel_extra: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>T</title><link>https://t.example/</link>{channel_extra}{items}"
        "</channel></rss>"
    ).encode()


def _item_as_json(item: RawItem) -> dict[str, Any]:
    data = asdict(item)
    for key in ("published", "updated"):
        if data[key] is not None:
            data[key] = data[key].isoformat()
    data["authors"] = list(data["authors"])
    data["categories"] = list(data["categories"])
    return data


def _corpus_cases() -> list[Any]:
    cases = []
    for expected in sorted(CORPUS.glob("*.expected.json")):
        stem = expected.name.removesuffix(".expected.json")
        inputs = [p for p in CORPUS.glob(f"{stem}.*") if not p.name.endswith(".expected.json")]
        assert len(inputs) == 1, f"{expected.name}: expected exactly one input file"
        cases.append(pytest.param(inputs[0], expected, id=stem))
    return cases


# --- corpus -----------------------------------------------------------------------------------


def test_corpus_covers_every_format() -> None:
    stems = {case.id for case in _corpus_cases()}
    assert {
        "rss091",
        "rss10_rdf",
        "rss2_basic",
        "atom03",
        "atom10",
        "jsonfeed10",
        "jsonfeed11",
        "rss2_latin1",
        "atom_xml_base",
        "rss2_dup_categories",
    } <= stems


@pytest.mark.parametrize(("source_file", "expected_file"), _corpus_cases())
def test_corpus(source_file: Path, expected_file: Path) -> None:
    expected = json.loads(expected_file.read_text(encoding="utf-8"))
    request = expected["request"]
    # The reference reading, feedparser's (its sanitized, URL-resolved markup included); the
    # lxml fast path is held to it by tests/test_fastfeed.py.
    document = parse_feed(
        source_file.read_bytes(),
        url=request["url"],
        headers=request["headers"],
        source=source_file.stem,
        fast=False,
    )
    assert document.kind == "feed"
    assert document.title == expected["title"]
    assert document.link == expected["link"]
    assert document.ttl_seconds == expected["ttl_seconds"]
    assert list(document.warnings) == expected["warnings"]
    assert [_item_as_json(item) for item in document.items] == expected["items"]


def test_latin1_feed_is_decoded_by_its_declaration() -> None:
    # The bytes really are ISO-8859-1 (not UTF-8), so this checks feedparser got them raw.
    body = (CORPUS / "rss2_latin1.xml").read_bytes()
    assert "für".encode("iso-8859-1") in body
    assert _parse(body).items[0].title == "½ Preis für Äpfel"


# --- fatal problems ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"   \n\t ", b"\xef\xbb\xbf  \n"])
def test_empty_body_is_an_error(body: bytes) -> None:
    with pytest.raises(ParseError, match="empty body"):
        _parse(body)


@pytest.mark.parametrize(
    "content_type", ["text/html; charset=utf-8", "application/rss+xml", "application/xml"]
)
def test_html_is_not_a_feed(content_type: str) -> None:
    body = b"<!DOCTYPE html>\n<html><head><title>Blog</title></head><body><p>Hi</p></body></html>"
    with pytest.raises(ParseError, match=r"not a feed \(looks like HTML\)") as caught:
        _parse(body, {"content-type": content_type})
    assert caught.value.source == "test"


def test_plain_text_is_not_a_feed() -> None:
    with pytest.raises(ParseError, match=r"not a feed \(looks like plain text\)"):
        _parse(b"INCOMING TRANSMISSION\nnothing to see here\n", {"content-type": "text/plain"})


def test_other_xml_is_not_a_feed() -> None:
    with pytest.raises(ParseError, match=r"not a feed \(XML with root element <urlset>\)"):
        _parse(b'<?xml version="1.0"?><urlset><url><loc>https://x.example/</loc></url></urlset>')


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"title": "x", "items": []}', "application/json", "without a JSON Feed version"),
        (b"[1, 2, 3]", "application/json", "not a JSON Feed object"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "", "invalid JSON"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', "", "without an items list"),
    ],
)
def test_json_that_is_not_a_json_feed(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        _parse(body, {"content-type": content_type})


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Cut</ti',
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Cut</title><item>',
    ],
)
def test_a_feed_cut_short_before_its_first_entry_is_an_error(body: bytes) -> None:
    with pytest.raises(ParseError, match=r"cut short \(truncated XML\) before its first entry"):
        _parse(body)


def test_a_body_that_names_a_local_file_is_not_read_as_that_file(tmp_path: Path) -> None:
    # feedparser.parse(bytes) would open() a bytes value that happens to be a path.
    feed_file = tmp_path / "feed.xml"
    feed_file.write_bytes(_rss("<item><title>from the disk</title></item>"))
    with pytest.raises(ParseError, match="not a feed"):
        _parse(str(feed_file).encode())


# --- security ---------------------------------------------------------------------------------

SECRET = "TOP-SECRET-7f3a9c"


def _xxe_bodies(secret_uri: str) -> list[bytes]:
    doc = (
        '<rss version="2.0"><channel><title>&xxe;</title>'
        "<item><title>&xxe;</title><description>&xxe;</description></item></channel></rss>"
    )
    decl = f'<!ENTITY xxe SYSTEM "{secret_uri}">'
    return [
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n  {decl}\n]>\n{doc}'.encode(),
        # on one line with the XML declaration, which feedparser's own DOCTYPE filter misses
        f'<?xml version="1.0"?><!DOCTYPE rss [{decl}]>{doc}'.encode(),
        # a comment and a quoted "<a" in front, to fool a naive "first <letter" scan
        f'<?xml version="1.0"?><!-- <a> --><!DOCTYPE rss SYSTEM "<a" [{decl}]>{doc}'.encode(),
        # text before the DOCTYPE, so that no root element is ever reached
        f"junk<!DOCTYPE rss [{decl}]>{doc}".encode(),
        # a parameter entity
        (
            f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY % p SYSTEM "{secret_uri}"> %p;]>'
            + doc.replace("&xxe;", "x")
        ).encode(),
        # UTF-16, where a byte search for "<!ENTITY" finds nothing
        f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE rss [{decl}]>{doc}'.encode("utf-16"),
    ]


def test_xxe_is_refused_and_leaks_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    for body in _xxe_bodies(secret.as_uri()):
        with pytest.raises(ParseError, match="declares entities") as caught:
            _parse(body)
        assert SECRET not in str(caught.value)


def test_xxe_in_utf7_declared_by_the_server_is_refused() -> None:
    # "+ADw-" is "<" in UTF-7: no "<!ENTITY" bytes, but a UTF-7 decoder sees one.
    body = (
        b'<?xml version="1.0"?><!DOCTYPE rss [+ADw-!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<rss version="2.0"><channel><title>&xxe;</title></channel></rss>'
    )
    assert b"<!ENTITY" not in body
    assert "<!ENTITY" in body.decode("utf-7")
    with pytest.raises(ParseError, match="declares entities"):
        _parse(body, {"content-type": "application/rss+xml; charset=utf-7"})


@pytest.mark.parametrize("opening", ['<?foo encoding="utf-7"?>', "<?x encoding='UTF-7' ?>"])
def test_xxe_in_utf7_named_by_an_opening_processing_instruction_is_refused(opening: str) -> None:
    # feedparser takes the encoding of whatever processing instruction opens the document.
    body = opening.encode() + (
        b'<!DOCTYPE rss [+ADw-!ENTITY e "EXPANDED">]>'
        b'+ADw-rss version="2.0">+ADw-channel>+ADw-title>&e;+ADw-/title>'
        b"+ADw-item>+ADw-title>&e;+ADw-/title>+ADw-/item>+ADw-/channel>+ADw-/rss>"
    )
    assert b"<!ENTITY" not in body
    with pytest.raises(ParseError, match="declares entities"):
        _parse(body, {"content-type": "application/rss+xml"})


def test_billion_laughs_is_refused_quickly() -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    body = (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n'
        + "\n".join(entities)
        + '\n]>\n<rss version="2.0"><channel><title>t</title>'
        "<item><title>&lol9;</title></item></channel></rss>"
    ).encode()
    started = time.perf_counter()
    with pytest.raises(ParseError, match="declares entities"):
        _parse(body)
    assert time.perf_counter() - started < 1.0


def test_a_doctype_without_entities_is_accepted() -> None:
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE rss PUBLIC'
        b' "-//Netscape Communications//DTD RSS 0.91//EN"'
        b' "http://my.netscape.com/publish/formats/rss-0.91.dtd">\n'
        + _rss("<item><title>ok</title></item>").split(b"?>", 1)[1]
    )
    assert [item.title for item in _parse(body).items] == ["ok"]


def test_an_endless_prolog_is_refused() -> None:
    body = b'<?xml version="1.0"?><!--' + b"x" * 100_000 + b"-->" + _rss("")
    with pytest.raises(ParseError, match="prolog longer"):
        _parse(body)


# --- survivable problems ----------------------------------------------------------------------


def test_truncated_feed_keeps_its_entries_with_a_warning() -> None:
    whole = _rss(
        "<item><title>one</title><link>https://t.example/1</link></item>"
        "<item><title>two</title><link>https://t.example/2</link></item>"
        "<item><title>three</title><link>https://t.example/3</link></item>"
    )
    cut = whole[: whole.index(b"<item><title>three")] + b"<item><title>thr"
    document = _parse(cut)
    # The entry the document stops in ("thr") is not whole: only the complete ones are kept.
    assert [item.title for item in document.items] == ["one", "two"]
    assert [item.link for item in document.items] == [
        "https://t.example/1",
        "https://t.example/2",
    ]
    assert document.warnings == (
        "the feed is cut short (truncated XML); kept its 2 complete entries",
    )


def test_a_cut_off_entry_with_nothing_in_it_is_dropped() -> None:
    whole = _rss("<item><title>one</title></item><item><title>two</title></item>")
    cut = whole[: whole.index(b"<title>two")]
    document = _parse(cut)
    assert [item.title for item in document.items] == ["one"]
    assert document.warnings == (
        "the feed is cut short (truncated XML); kept its 1 complete entry",
    )


@pytest.mark.parametrize("fast", [True, False], ids=["lxml", "feedparser"])
def test_an_entry_with_nothing_in_it_is_dropped(fast: bool) -> None:
    document = _parse(_rss("<item><title>one</title></item><item></item>"), fast=fast)
    assert [item.title for item in document.items] == ["one"]
    assert document.warnings == ("skipped 1 empty entries",)


def test_feed_served_as_html_is_read_with_a_warning() -> None:
    document = _parse(_rss("<item><title>one</title></item>"), {"content-type": "text/html"})
    assert [item.title for item in document.items] == ["one"]
    assert document.warnings == ("content type: text/html is not an XML media type",)


def test_wrong_charset_header_is_overridden_with_a_warning() -> None:
    body = (CORPUS / "rss2_latin1.xml").read_bytes()
    document = _parse(body, {"content-type": "application/rss+xml; charset=utf-8"})
    assert document.title == "Café Müller © 2026"
    assert document.warnings == ("encoding: document declared as utf-8, but parsed as iso-8859-1",)


def test_local_file_without_headers_gets_no_warning() -> None:
    body = "<rss version='2.0'><channel><title>中文</title></channel></rss>".encode()
    document = parse_feed(body, url="/srv/feeds/local.xml", headers={}, source="local")
    assert document.title == "中文"  # UTF-8 without a declaration, as XML says
    assert document.warnings == ()


def test_a_real_feed_with_no_entries_is_fine() -> None:
    document = _parse(_rss(""))
    assert document.kind == "feed"
    assert document.items == ()
    assert document.title == "T"
    assert document.warnings == ()


def test_json_feed_with_no_items_is_fine() -> None:
    body = b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": []}'
    document = _parse(body, {"content-type": "application/feed+json"})
    assert (document.kind, document.items, document.title) == ("feed", (), "J")


def test_max_items_caps_the_entries() -> None:
    items = "".join(f"<item><title>n{i}</title></item>" for i in range(10))
    document = _parse(_rss(items), max_items=3)
    assert [(item.title, item.position) for item in document.items] == [
        ("n0", 0),
        ("n1", 1),
        ("n2", 2),
    ]
    assert "kept the first 3 of 10 entries" in document.warnings


def test_json_feed_max_items() -> None:
    entries = ",".join(f'{{"id": "{i}", "content_text": "x"}}' for i in range(5))
    body = f'{{"version": "https://jsonfeed.org/version/1", "items": [{entries}]}}'.encode()
    document = _parse(body, {"content-type": "application/json"}, max_items=2)
    assert [item.guid for item in document.items] == ["0", "1"]


@pytest.mark.parametrize(
    ("channel_extra", "seconds"),
    [
        ("<ttl>30</ttl>", 1800),
        ("<ttl>soon</ttl>", None),
        ("<ttl>0</ttl>", None),
        ("", None),
    ],
)
def test_rss_ttl(channel_extra: str, seconds: int | None) -> None:
    assert _parse(_rss("", channel_extra)).ttl_seconds == seconds


def test_sy_update_period_and_frequency() -> None:
    body = _rss(
        "", "<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>2</sy:updateFrequency>"
    )
    body = body.replace(
        b'<rss version="2.0">',
        b'<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/">',
    )
    assert _parse(body).ttl_seconds == 1800


# --- sniff ------------------------------------------------------------------------------------

JSON_FEED = b'{"version": "https://jsonfeed.org/version/1.1", "title": "x", "items": []}'


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        (b'<?xml version="1.0"?>\n<rss version="2.0"><channel/></rss>', "", "feed"),
        (b'<feed xmlns="http://www.w3.org/2005/Atom"><title>a</title></feed>', "", "feed"),
        (b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="x"><channel/></rdf:RDF>', "", "feed"),
        (
            b'\xef\xbb\xbf<?xml version="1.0"?>\n<?xml-stylesheet href="s.xsl"?>\n'
            b"<!-- <html> in a comment -->\n<!DOCTYPE rss [ ]>\n<rss/>",
            "text/html",
            "feed",
        ),
        ('<?xml version="1.0"?><rss version="2.0"/>'.encode("utf-16"), "", "feed"),
        (JSON_FEED, "application/json", "feed"),
        (b"  " + JSON_FEED, "", "feed"),
        (b'{"items": []}', "application/feed+json", "feed"),
        (b'{"name": "not a feed"}', "application/json", "text"),
        (b"<rss", "application/rss+xml", "feed"),
        (b"?", "application/atom+xml; charset=utf-8", "feed"),
        (b"<!doctype html><title>x</title>", "", "page"),
        (b"<HTML><BODY>shouting</BODY></HTML>", "application/octet-stream", "page"),
        (b"<!-- generated -->\n<div class='post'>hello</div>", "", "page"),
        (b"<!DOCTYPE html><html><p>x</p></html>", "application/rss+xml", "page"),
        (b"hello, plain page", "text/html; charset=utf-8", "page"),
        (b"INCOMING TRANSMISSION\n\nLATEST UPDATES\n1. something", "text/plain", "text"),
        (b"", "", "text"),
        (b"x" * 5000 + b"<rss version='2.0'></rss>", "", "text"),  # only the head is read
        # Markup is never a text capture under kind = "auto", whatever the server says.
        (b'<?xml version="1.0"?>\n<!-- unclosed\n--><feed version="0.3">', "text/plain", "feed"),
        (b"<!-- generator: x --\n--><feed version='0.3' xmlns='x'>\n", "text/plain", "feed"),
        (b'<?xml version="1.0"?>\n<<<', "text/plain", "feed"),
        (b"<entries><e>one</e></entries>", "text/plain", "feed"),
    ],
)
def test_sniff(body: bytes, content_type: str, kind: str) -> None:
    assert sniff(body, content_type) == kind


def test_sniff_is_fast_on_a_big_body() -> None:
    body = b"<rss version='2.0'><channel>" + b"<item><title>t</title></item>" * 400_000
    started = time.perf_counter()
    assert sniff(body, "") == "feed"
    assert time.perf_counter() - started < 0.05


# --- the example feeds ------------------------------------------------------------------------


def _example(name: str) -> ParsedDocument:
    path = EXAMPLES / name
    # As the refresh reads a local file: its path as the URL, no HTTP headers.
    return parse_feed(path.read_bytes(), url=str(path), headers={}, source=name)


def test_examples_parse_cleanly() -> None:
    notes, journal = _example("notes.rss"), _example("journal.atom")
    assert (len(notes.items), len(journal.items)) == (8, 7)
    assert notes.warnings == journal.warnings == ()
    for item in notes.items + journal.items:
        assert item.link is not None
        parts = urlsplit(item.link)
        assert parts.scheme in ("http", "https") and parts.netloc, item.link


def test_examples_share_one_post() -> None:
    notes = {item.title: item for item in _example("notes.rss").items}
    journal = {item.title: item for item in _example("journal.atom").items}
    assert set(notes) & set(journal) == {SHARED_TITLE}
    rss_copy, atom_copy = notes[SHARED_TITLE], journal[SHARED_TITLE]
    assert rss_copy.content == atom_copy.content
    assert rss_copy.published == atom_copy.published
    assert rss_copy.link == "https://notes.example.org/posts/2026/lr-warmup/"
    assert atom_copy.link == (
        "https://NOTES.Example.org/posts/2026/lr-warmup/?utm_source=rss&utm_medium=feed"
    )


def test_examples_are_messy_on_purpose() -> None:
    items = _example("notes.rss").items + _example("journal.atom").items
    contents = [item.content for item in items]
    assert sum("<pre><code" in content for content in contents) >= 2
    assert any("\\[" in content for content in contents)
    assert any("<math" in content for content in contents)
    assert sum(item.published is None and item.updated is None for item in items) == 2
    assert any("\u4e00" <= (item.title or " ")[0] <= "\u9fff" for item in items)
    dates = [item.published for item in items if item.published is not None]
    assert all(date.year == 2026 and date.month < 11 for date in dates)


# --- RSS author strings -------------------------------------------------------------------------

_AUTHOR_SHAPES = [
    ("alice@origin.example (Alice Ng)", "Alice Ng", "alice@origin.example"),
    ("Alice Ng <alice@origin.example>", "Alice Ng", "alice@origin.example"),
    ('"Alice Ng" <alice@origin.example>', "Alice Ng", "alice@origin.example"),
    ("Alice Ng (alice@origin.example)", "Alice Ng", "alice@origin.example"),
    ("(Alice Ng) alice@origin.example", "Alice Ng", "alice@origin.example"),
    ("mailto:alice@origin.example (Alice Ng)", "Alice Ng", "alice@origin.example"),
    ("Alice Ng", "Alice Ng", None),
    ("alice@origin.example", None, "alice@origin.example"),
]


@pytest.mark.parametrize(("text", "name", "email"), _AUTHOR_SHAPES)
def test_an_rss_author_string_splits_into_name_and_email(
    text: str, name: str | None, email: str | None
) -> None:
    assert split_person(text) == (name, email)


@pytest.mark.parametrize("fast", [True, False], ids=["lxml", "feedparser"])
@pytest.mark.parametrize("element", ["author", "dc:creator"])
@pytest.mark.parametrize(("text", "name", "email"), _AUTHOR_SHAPES)
def test_rss_authors_give_the_name_a_reader_expects_on_both_paths(
    text: str, name: str | None, email: str | None, element: str, fast: bool
) -> None:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        "<title>T</title><link>https://t.example/</link>"
        f"<item><title>a</title><{element}>{escape(text)}</{element}></item>"
        "</channel></rss>"
    ).encode()
    (item,) = _parse(body, fast=fast).items
    assert item.authors == (name or email,)


@pytest.mark.parametrize("fast", [True, False], ids=["lxml", "feedparser"])
def test_several_rss_authors_keep_their_names(fast: bool) -> None:
    body = _rss(
        "<item><title>a</title><author>alice@origin.example (Alice Ng)</author>"
        "<author>Bob Li &lt;bob@origin.example&gt;</author></item>"
    )
    (item,) = _parse(body, fast=fast).items
    assert item.authors == ("Alice Ng", "Bob Li")


def test_an_rss_channel_editor_is_not_an_item_author() -> None:
    body = _rss(
        "<item><title>a</title></item>",
        channel_extra="<managingEditor>eds@planet.example (Planet Editors)</managingEditor>",
    )
    for fast in (True, False):
        (item,) = _parse(body, fast=fast).items
        assert item.authors == ()


@pytest.mark.parametrize("fast", [True, False], ids=["lxml", "feedparser"])
@pytest.mark.parametrize("codec", ["utf-8", "utf-16"])
def test_a_reference_to_no_character_costs_that_character(fast: bool, codec: str) -> None:
    body = (
        f'<?xml version="1.0" encoding="{codec}"?>\n<rss version="2.0"><channel><title>T</title>'
        "<item><title>a &#xD800; b &#55357;&#56832; c &#x110000;</title>"
        "<link>https://t.example/1</link></item>"
        "<item><title>clean</title><link>https://t.example/2</link></item></channel></rss>"
    ).encode(codec)
    document = _parse(body, fast=fast)
    assert [item.title for item in document.items] == ["a \ufffd b \U0001f600 c \ufffd", "clean"]
    assert len(document.warnings) == 1 and document.warnings[0].startswith(
        "3 character references to no character"
    )
