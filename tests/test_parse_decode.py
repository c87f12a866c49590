"""The one decoder of the page and text parsers (aggregator/parse/decode.py).

Precedence: BOM, then the HTTP charset, then the XML declaration or a <meta> charset, then
detection, then UTF-8 with replacement.
"""

from __future__ import annotations

import pytest

from aggregator.parse.decode import charset_param, decode, repair_charrefs, xml_encoding

# --------------------------------------------------------------------------- as HTML pages read


GBK_HTML = "<html><head><title>中文标题</title></head><body>正文</body></html>"


def test_header_charset_beats_a_wrong_meta() -> None:
    body = ('<meta charset="utf-8">' + GBK_HTML).encode("gbk")
    assert "中文标题" in decode(body, {"content-type": "text/html; charset=gbk"})


def test_meta_charset_used_when_the_header_has_none() -> None:
    body = ('<meta charset="gb2312">' + GBK_HTML).encode("gbk")
    assert "中文标题" in decode(body, {"content-type": "text/html"})


def test_meta_http_equiv_charset() -> None:
    body = (
        '<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">' + "日本語"
    ).encode("shift_jis")
    assert decode(body, {}).endswith("日本語")


def test_a_header_that_lies_falls_back_to_the_meta() -> None:
    # Declared UTF-8 by the server, really GBK as the page says: strict UTF-8 fails first.
    body = ('<meta charset="gbk">' + GBK_HTML).encode("gbk")
    assert "中文标题" in decode(body, {"content-type": "text/html; charset=utf-8"})


def test_bom_beats_header_and_meta() -> None:
    body = b"\xef\xbb\xbf" + '<meta charset="iso-8859-1">café'.encode()
    text = decode(body, {"content-type": "text/html; charset=windows-1251"})
    assert text.endswith("café")
    assert not text.startswith("\ufeff")


def test_utf16_bom() -> None:
    body = "\ufeff<p>naïve</p>".encode("utf-16-le")
    assert decode(body, {}) == "<p>naïve</p>"


def test_latin1_label_on_utf8_bytes_is_read_as_utf8() -> None:
    body = "<p>Ünïcödé – “quotes”</p>".encode()
    assert decode(body, {"content-type": "text/html; charset=ISO-8859-1"}) == body.decode()


def test_latin1_label_on_real_latin1_uses_windows_1252() -> None:
    body = "<p>café “smart”</p>".encode("cp1252")
    assert decode(body, {"content-type": "text/html; charset=iso-8859-1"}) == (
        "<p>café “smart”</p>"
    )


def test_unknown_charset_label_is_ignored() -> None:
    body = '<meta charset="x-no-such-charset"><p>ok ✓</p>'.encode()
    assert decode(body, {}).endswith("<p>ok ✓</p>")


def test_undeclared_gbk_is_detected_not_read_as_latin1() -> None:
    body = "<p>随机森林的特征重要性有两种常见的计算方法，各有优缺点。</p>".encode("gbk")
    assert "随机森林" in decode(body, {})


def test_invalid_bytes_are_replaced_not_fatal() -> None:
    body = b'<meta charset="utf-8"><p>ok \xff\xfe bad</p>'
    text = decode(body, {})
    assert "ok" in text and "bad" in text and "\ufffd" in text


def test_meta_charset_is_read_from_the_first_2kb_only() -> None:
    # A late (wrong) <meta> is not honoured: the UTF-8 body is read as UTF-8.
    late = b"<!--" + b"x" * 3000 + b'--><meta charset="gb18030">' + "中文".encode()
    assert decode(late, {}).endswith("中文")
    early = b'<meta charset="gbk"><!--' + b"x" * 1500 + b"-->" + "中文".encode("gbk")
    assert decode(early, {}).endswith("中文")


# --------------------------------------------------------------------------- as text captures read


def test_text_prefers_utf8_over_a_latin1_header() -> None:
    body = "摘要 résumé".encode()
    assert decode(body, {"content-type": "text/plain; charset=ISO-8859-1"}) == "摘要 résumé"


def test_text_uses_the_header_when_not_utf8() -> None:
    body = "Заметки о сборке".encode("cp1251")
    assert decode(body, {"content-type": "text/plain; charset=windows-1251"}) == (
        "Заметки о сборке"
    )


def test_text_bom_is_stripped() -> None:
    assert decode(b"\xef\xbb\xbfabc", {}) == "abc"


# --------------------------------------------------------------------------- the precedence

CYRILLIC = "Заметки о сборке"
XML_1251 = '<?xml version="1.0" encoding="windows-1251"?><r>'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xef\xbb\xbf" + (XML_1251 + CYRILLIC).encode(), XML_1251 + CYRILLIC),
        (("\ufeff" + XML_1251 + CYRILLIC).encode("utf-16-le"), XML_1251 + CYRILLIC),
        (("\ufeff<p>" + CYRILLIC).encode("utf-16-be"), "<p>" + CYRILLIC),
    ],
    ids=["utf-8", "utf-16-le", "utf-16-be"],
)
def test_bom_beats_header_and_xml_declaration(body: bytes, expected: str) -> None:
    assert decode(body, {"content-type": "text/xml; charset=iso-8859-5"}) == expected


def test_header_beats_xml_declaration() -> None:
    body = (XML_1251 + CYRILLIC).encode("koi8-r")
    assert decode(body, {"content-type": "application/xml; charset=koi8-r"}).endswith(CYRILLIC)


def test_header_beats_the_utf8_check_for_labels_other_than_latin1() -> None:
    # What the server says outranks a guess, even when the bytes also happen to be UTF-8.
    body = CYRILLIC.encode()
    assert decode(body, {"content-type": "text/plain; charset=windows-1251"}) == body.decode(
        "cp1251"
    )


def test_xml_declaration_used_without_a_header_charset() -> None:
    body = (XML_1251 + CYRILLIC).encode("cp1251")
    assert decode(body, {"content-type": "application/xml"}) == XML_1251 + CYRILLIC


def test_xml_declaration_beats_meta() -> None:
    body = (XML_1251 + '<meta charset="koi8-r">' + CYRILLIC).encode("cp1251")
    assert decode(body, {}).endswith(CYRILLIC)


def test_a_header_that_lies_falls_back_to_the_xml_declaration() -> None:
    body = (XML_1251 + CYRILLIC).encode("cp1251")
    assert decode(body, {"content-type": "text/xml; charset=utf-8"}).endswith(CYRILLIC)


def test_in_document_utf16_label_means_utf8() -> None:
    body = ('<?xml version="1.0" encoding="UTF-16"?><r>' + CYRILLIC).encode()
    assert decode(body, {}).endswith(CYRILLIC)
    body = ('<meta charset="utf-16le"><p>' + CYRILLIC).encode()
    assert decode(body, {}).endswith(CYRILLIC)


def test_declared_but_wrong_everywhere_keeps_the_first_declared_charset() -> None:
    # Neither declaration decodes cleanly: the header's charset, with replacement marks,
    # not detection.
    body = b'<meta charset="utf-8"><p>' + "Grüße".encode("cp1252") + b"\x81"
    text = decode(body, {"content-type": "text/html; charset=windows-1252"})
    assert text == '<meta charset="utf-8"><p>Grüße\ufffd'


def test_unknown_header_label_falls_through_to_the_document() -> None:
    body = ('<meta charset="windows-1251"><p>' + CYRILLIC).encode("cp1251")
    assert decode(body, {"content-type": "text/html; charset=x-bogus"}).endswith(CYRILLIC)


def test_header_names_are_matched_whatever_their_case() -> None:
    body = CYRILLIC.encode("cp1251")
    assert decode(body, {"Content-Type": "text/plain; charset=windows-1251"}) == CYRILLIC


def test_undeclared_valid_utf8_is_utf8() -> None:
    assert decode("naïve – ok".encode(), {}) == "naïve – ok"


def test_undecodable_bytes_with_nothing_to_go_on_never_raise() -> None:
    text = decode(bytes(range(256)) * 4, {})
    assert isinstance(text, str) and text


@pytest.mark.parametrize(
    ("content_type", "label"),
    [
        ("text/html; charset=utf-8", "utf-8"),
        ('text/html; charset="GBK"', "GBK"),
        ("text/html;charset = 'iso-8859-1'", "iso-8859-1"),
        ("text/html; charset=utf-8; foo=bar", "utf-8"),
        ("text/html", None),
        ("", None),
    ],
)
def test_charset_param(content_type: str, label: str | None) -> None:
    assert charset_param(content_type) == label


def test_xml_encoding() -> None:
    assert xml_encoding("<?xml version='1.0' encoding='ISO-8859-1'?><rss/>") == "ISO-8859-1"
    assert xml_encoding('<?xml version="1.0"?><rss/>') is None
    assert xml_encoding("<rss/>" + " " * 2000 + '<?xml encoding="utf-7"?>') is None


# --- character references to no character --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "repaired", "count"),
    [
        (b"a&#55357;&#56832;b", b"a&#x1F600;b", 1),  # a surrogate pair: the character it spells
        (b"&#xd83d;&#xDE00;", b"&#x1F600;", 1),
        (b"&#xD800;", b"&#xFFFD;", 1),
        (b"&#55357;", b"&#xFFFD;", 1),  # a lone high surrogate
        (b"&#56832;&#55357;", b"&#xFFFD;&#xFFFD;", 2),  # low before high: no pair
        (b"&#x110000;", b"&#xFFFD;", 1),
        (b"&#99999999999999999999;", b"&#xFFFD;", 1),
        (b"&#65535;&#xFFFE;", b"&#xFFFD;&#xFFFD;", 2),
        (b"x&#1;y&#0;z", b"xyz", 2),  # controls XML forbids: dropped
        # Legal references are left alone, whatever their spelling.
        (
            b"&#55000;&#233;&#x1F600;&#9;&#xE000;&#x10FFFF;",
            b"&#55000;&#233;&#x1F600;&#9;&#xE000;&#x10FFFF;",
            0,
        ),
        (b"no references", b"no references", 0),
    ],
)
def test_repair_charrefs(body: bytes, repaired: bytes, count: int) -> None:
    assert repair_charrefs(body) == (repaired, count)


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_repair_charrefs_in_a_wide_encoding_keeps_the_encoding(codec: str) -> None:
    body = "<rss>a &#xD800; b &#55357;&#56832;</rss>".encode(codec)
    repaired, count = repair_charrefs(body)
    assert count == 2
    assert repaired.decode(codec) == "<rss>a &#xFFFD; b &#x1F600;</rss>"
