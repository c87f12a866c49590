"""safe_http_url (the link gate every parser calls), clean_url and canonical_url."""

from __future__ import annotations

import pytest

from aggregator.urls import canonical_url, clean_url, safe_http_url

BASE = "https://blog.example/posts/index.html"
PAGE = "https://site.example.com/blog/"

UNSAFE = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "   javascript:alert(1)",
    "\tjavascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "java\x00script:alert(1)",
    "java\u200bscript:alert(1)",
    "javascript&#58;alert(1)",
    "javascript&#58alert(1)",
    "javascript&#x3A;alert(1)",
    "javascript&colon;alert(1)",
    "&#x6A;avascript:alert(1)",
    "&#106;&#97;&#118;&#97;script:alert(1)",
    "jav&#x09;ascript:alert(1)",
    "vbscript:msgbox(1)",
    "VBScript:msgbox(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    " DATA:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "ftp://files.example/a",
    "mailto:someone@example.com",
    "about:blank",
]


@pytest.mark.parametrize("href", UNSAFE)
def test_unsafe_schemes_are_dropped_with_or_without_base(href: str) -> None:
    assert safe_http_url(href) is None
    assert safe_http_url(href, BASE) is None


@pytest.mark.parametrize(
    ("href", "base", "expected"),
    [
        ("https://example.com/a", None, "https://example.com/a"),
        ("http://example.com/a", None, "http://example.com/a"),
        ("HTTPS://Example.com/A", None, "HTTPS://Example.com/A"),  # cleaned later, not here
        ("  https://example.com/a  ", None, "https://example.com/a"),
        ("/b/c", BASE, "https://blog.example/b/c"),
        ("c?x=1", BASE, "https://blog.example/posts/c?x=1"),
        ("../up", BASE, "https://blog.example/up"),
        ("//cdn.example/x", BASE, "https://cdn.example/x"),
        ("//cdn.example/x", None, "https://cdn.example/x"),
        ("/p?a=1&amp;b=2", BASE, "https://blog.example/p?a=1&b=2"),
        ("/a b", BASE, "https://blog.example/a%20b"),
        ("https://example.com/x?copy=1&reg=2", None, "https://example.com/x?copy=1&reg=2"),
        ("/relative", None, None),
        ("", BASE, None),
        (None, BASE, None),
        ("   ", BASE, None),
        ("http://[::1", BASE, None),
        ("http://example.com:99999/", None, None),
        ("https:///nohost", None, None),
        ("/x", "javascript:alert(1)", None),  # an unsafe base resolves nothing
        ("https://example.com/a\ud800b\u202e", None, "https://example.com/ab"),
    ],
)
def test_safe_http_url(href: str | None, base: str | None, expected: str | None) -> None:
    assert safe_http_url(href, base) == expected


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "  javascript:alert(1)",
        "\x01javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "mailto:someone@example.com",
        "#top",
        "",
        None,
        "http://[::1",
    ],
)
def test_unsafe_or_useless_page_links_are_dropped(href: str | None) -> None:
    assert safe_http_url(href, PAGE, same_document=False) is None


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("post.html", "https://site.example.com/blog/post.html"),
        ("../about/", "https://site.example.com/about/"),
        ("/root.html", "https://site.example.com/root.html"),
        ("//cdn.example.net/x", "https://cdn.example.net/x"),
        (" post.html\n", "https://site.example.com/blog/post.html"),
        ("http://other.example.org/a?b=1", "http://other.example.org/a?b=1"),
    ],
)
def test_page_links_are_made_absolute(href: str, expected: str) -> None:
    assert safe_http_url(href, PAGE, same_document=False) == expected


@pytest.mark.parametrize(
    "href",
    [
        "https://blog.example/posts/javascript&#58;alert(1)",
        "https://blog.example/posts/javascript&colon;alert(1)",
        "https://blog.example/posts/javascript%3Aalert(1)",
        "https://blog.example/posts/java\u200bscript:alert(1)",
        "https://blog.example/posts/%20data%3Atext/html,x",
        "javascript%3Aalert(1)",
        "vbscript%3amsgbox(1)",
    ],
)
def test_a_scheme_hidden_from_an_earlier_resolution_is_refused(href: str) -> None:
    # feedparser resolves `javascript&#58;x` as if it were a path under the feed's folder.
    assert safe_http_url(href, BASE) is None


@pytest.mark.parametrize(
    "href",
    [
        "https://blog.example/posts/Talk:Page",  # a plain colon in a path hides nothing
        "https://blog.example/elsewhere/javascript&#58;x",  # not under the base's folder
        "https://blog.example/posts/a/b%3Ac",
    ],
)
def test_links_under_the_base_that_hide_no_scheme_are_kept(href: str) -> None:
    assert safe_http_url(href, BASE) is not None


def test_the_base_folder_of_a_bare_host() -> None:
    assert safe_http_url("https://blog.example/javascript&#58;x", "https://blog.example") is None
    assert safe_http_url("https://blog.example:8080/a", "https://blog.example") == (
        "https://blog.example:8080/a"
    )


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("\t https://example.com/a \n", "https://example.com/a"),
        ("https://exa\nmple.com/a", "https://example.com/a"),
        ("\u3000https://example.com/a", "https://example.com/a"),
        ("https://example.com/a\u00a0b", "https://example.com/a\u00a0b"),
    ],
)
def test_whitespace(href: str, expected: str) -> None:
    assert safe_http_url(href) == expected


def test_credentials_are_kept_by_the_gate_and_dropped_by_clean_url() -> None:
    link = safe_http_url("https://good.example@evil.example/p")
    assert link == "https://good.example@evil.example/p"
    assert clean_url(link) == "https://evil.example/p"


def test_unicode_hosts_pass_the_gate_and_are_made_idna_by_clean_url() -> None:
    link = safe_http_url("/路径", "https://例子.测试/a")
    assert link == "https://例子.测试/路径"
    assert clean_url(link) == "https://xn--fsqu00a.xn--0zwm56d/路径"


def test_fragment_only_references() -> None:
    assert safe_http_url("#top", BASE) == BASE + "#top"
    assert safe_http_url("#top", BASE, same_document=False) is None
    assert safe_http_url(" \t#top", BASE, same_document=False) is None
    assert safe_http_url("a#top", BASE, same_document=False) == "https://blog.example/posts/a#top"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://WWW.Example.COM/Path", "http://www.example.com/Path"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/a/", "https://example.com/a/"),
        ("https://example.com/a?", "https://example.com/a"),
        ("https://example.com/a#section", "https://example.com/a"),
        ("https://example.com/#!/post/1", "https://example.com/#!/post/1"),
        ("https://user:pw@example.com/a", "https://example.com/a"),
        ("https://bücher.example/a", "https://xn--bcher-kva.example/a"),
        ("https://例子.测试/路径", "https://xn--fsqu00a.xn--0zwm56d/路径"),
        ("https://example.com./a", "https://example.com/a"),
        ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("https://example.com/a%2fb", "https://example.com/a%2Fb"),
    ],
)
def test_clean_url(url: str, expected: str) -> None:
    assert clean_url(url) == expected


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("utm_source=rss&utm_medium=feed&utm_campaign=x&utm_whatever=1", ""),
        ("UTM_Source=rss", ""),
        ("fbclid=1&gclid=2&dclid=3&gbraid=4&wbraid=5&msclkid=6", ""),
        ("mc_cid=1&mc_eid=2&_hsenc=3&_hsmi=4&yclid=5&igshid=6&spm=7&scm=8", ""),
        ("ref_src=twsrc&ref_url=x", ""),
        ("ref=rss", ""),
        ("ref=Feed", ""),
        ("ref=atom&ref=twitter", ""),
        ("source=rss&from=rss", ""),
        ("ref=homepage", "ref=homepage"),
        ("source=web", "source=web"),
        ("id=3&utm_source=x&page=2", "id=3&page=2"),
        ("b=2&a=1&fbclid=x&c=3", "b=2&a=1&c=3"),  # order of the others is kept
        ("q=a+b&utm_term=x", "q=a+b"),
        ("a=1&&b=2", "a=1&b=2"),
        ("flag", "flag"),
    ],
)
def test_tracking_parameters_removed(query: str, kept: str) -> None:
    url = "https://example.com/p?" + query
    expected = "https://example.com/p" + ("?" + kept if kept else "")
    assert clean_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/a", "https://example.com/a"),
        ("http://example.com:80/a/", "https://example.com/a"),
        ("http://example.com:443/a", "https://example.com/a"),
        ("https://Example.com/a/b/", "https://example.com/a/b"),
        ("https://example.com/a//", "https://example.com/a/"),  # only one slash is stripped
        ("https://example.com/", "https://example.com/"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/a/?utm_source=rss#top", "https://example.com/a"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_http_and_https_of_one_post_have_one_canonical_form() -> None:
    assert canonical_url("http://example.com/post/") == canonical_url(
        "https://EXAMPLE.com/post?utm_source=rss"
    )


def test_canonical_url_is_idempotent() -> None:
    for url in ["HTTP://Ex.com:80/a/?utm_source=x&b=1#f", "https://bücher.example/", "http://x.y"]:
        once = canonical_url(url)
        assert canonical_url(once) == once
        assert clean_url(clean_url(url)) == clean_url(url)


def test_malformed_url_is_returned_stripped_not_raised() -> None:
    assert canonical_url(" http://[::1/x ") == "http://[::1/x"
