"""html_to_text, clean_text, cut, fold, first_sentence, is_truncated."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.textutil import (
    clean_text,
    cut,
    first_sentence,
    fold,
    html_to_text,
    is_truncated,
)


def text_of(html: str, code: str = "[code]", formula: str = "[formula]") -> str:
    return html_to_text(html, code_placeholder=code, formula_placeholder=formula)


# --- html_to_text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Hello <b>wor</b>ld</p>", "Hello world"),
        ("<p>One</p><p>Two</p>", "One Two"),
        ("<div><p>a</p>b</div>", "a b"),
        ("<p>a</p><b>b</b>", "a b"),
        ("line<br>break<br/>again", "line break again"),
        ("<ul><li>one</li><li>two</li></ul>", "one two"),
        ("<h1>Title</h1>text", "Title text"),
        ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b c"),
        ("<blockquote>quoted</blockquote>after", "quoted after"),
        ("<a href='x'>link</a>.", "link."),
        ("Tom &amp; Jerry &lt;3 &quot;q&quot; &#x263A; &eacute;", 'Tom & Jerry <3 "q" ☺ é'),
        ("a&nbsp;&nbsp;b", "a b"),
        ("&lt;b&gt;escaped&lt;/b&gt;", "<b>escaped</b>"),
        ("a < b and c > d", "a < b and c > d"),
        ("plain text", "plain text"),
        ("", ""),
        ("   \n\t ", ""),
    ],
)
def test_html_to_text_structure(html: str, expected: str) -> None:
    assert text_of(html) == expected


@pytest.mark.parametrize(
    "html",
    [
        "<script>alert('x')</script>Visible",
        "<style>p { color: red }</style>Visible",
        "<noscript>enable js</noscript>Visible",
        "<template><p>hidden</p></template>Visible",
        "<iframe src='x'>frame</iframe>Visible",
        "<svg><text>drawing</text></svg>Visible",
        "<!-- a comment -->Visible",
        "<head><title>Page title</title></head><body>Visible</body>",
        "<title>Page title</title>Visible",
        "<SCRIPT type='text/javascript'>x()</SCRIPT>Visible",
    ],
)
def test_invisible_elements_are_dropped(html: str) -> None:
    assert text_of(html) == "Visible"


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Run:</p><pre><code>x = 1\ny = 2</code></pre><p>done</p>", "Run: [code] done"),
        ("<pre>just pre</pre>", "[code]"),
        ("<p>multi <code>a\nb</code> line</p>", "multi [code] line"),
        ("<p>Call <code>foo()</code> now</p>", "Call foo() now"),  # inline code keeps its text
        ("<pre><code class='lang-py'><span>def</span> f(): pass</code></pre>x", "[code] x"),
    ],
)
def test_code_blocks_become_the_placeholder(html: str, expected: str) -> None:
    assert text_of(html) == expected


@pytest.mark.parametrize(
    "html",
    [
        "a <math><mi>x</mi><mo>=</mo><mn>2</mn></math> b",
        "a <span class='katex'><span class='katex-mathml'>x</span><span>x</span></span> b",
        "a <span class='katex-display'><span class='katex'>x</span></span> b",
        "a <div class='MathJax_Display'>x</div> b",
        "a <span class='MathJax'>x</span> b",
        "a <mjx-container class='MathJax' jax='CHTML'><mjx-math>x</mjx-math></mjx-container> b",
        "a <script type='math/tex'>x^2</script> b",
        "a <script type='math/tex; mode=display'>x^2</script> b",
        "a \\[x^2 + y^2\\] b",
        "<p>a $$\\sum_i x_i$$ b</p>",
        "a <span class='MathJax_Preview'>x</span><span class='MathJax'>x</span>"
        "<script type='math/tex'>x</script> b",
        "a \\[x\n^2\\] b",
    ],
)
def test_formulas_become_one_placeholder(html: str) -> None:
    assert text_of(html) == "a [formula] b"


def test_custom_placeholders() -> None:
    html = "<p>Code:</p><pre>x</pre><p>Math:</p><math><mi>x</mi></math> \\[y\\]"
    assert text_of(html, code="[代码]", formula="[公式]") == "Code: [代码] Math: [公式] [公式]"


def test_inline_dollars_are_not_formulas() -> None:
    assert text_of("<p>It costs $5 and $10.</p>") == "It costs $5 and $10."


@pytest.mark.parametrize(
    "html",
    [
        "<div><p>unclosed <b>bold <i>italic</div>tail",
        "<p>a</b></i></span>b",
        "<<<>>>&&&;;;",
        "<a href='x",
        "<!-- never closed",
        "<script>never closed",
        "</p></div>",
        "<div>" * 5000 + "deep",
        "\x00<p>\x00nul</p>",
    ],
)
def test_broken_html_does_not_raise(html: str) -> None:
    text = text_of(html)
    assert "\x00" not in text
    assert "<div" not in text


def test_deep_nesting_keeps_text() -> None:
    assert text_of("<div>" * 5000 + "deep" + "</div>" * 5000 + "after") == "deep after"


# --- clean_text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\x00b", "ab"),
        ("a\x07b\x1bc\x7fd", "abcd"),
        ("a\x85b", "a b"),  # NEL is a line break
        ("a\u0090b", "ab"),
        ("tab\tnew\nline\r\nend", "tab new line end"),
        ("bidi\u202eevil\u202c ok", "bidievil ok"),
        ("iso\u2066late\u2069d", "isolated"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("lone\ud800surrogate\udfff", "lonesurrogate"),
        ("  many     spaces\u3000and\u00a0nbsp  ", "many spaces and nbsp"),
        ("emoji 👩‍💻 keeps its joiner", "emoji 👩‍💻 keeps its joiner"),
        ("", ""),
    ],
)
def test_clean_text(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


_FORBIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u200b\u202a-\u202e\u2066-\u2069\ufeff]|\\s\\s"
)


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_clean_text_leaves_no_control_bidi_or_surrogate(raw: str) -> None:
    cleaned = clean_text(raw)
    assert not _FORBIDDEN.search(cleaned)
    assert cleaned == cleaned.strip()
    assert clean_text(cleaned) == cleaned


@given(st.text(alphabet=st.sampled_from("ab <>&;#x0\n\t/=\"'pdivscript\x00\u202e")))
def test_html_to_text_output_is_clean(html: str) -> None:
    text = text_of(html)
    assert clean_text(text) == text


# --- cut -------------------------------------------------------------------------------------


def test_no_ellipsis_when_nothing_is_cut() -> None:
    assert cut("short text", 350) == ("short text", False)
    assert cut("x" * 350, 350) == ("x" * 350, False)


def test_latin_cut_at_word_boundary() -> None:
    text = "The quick brown fox jumps over the lazy dog and keeps running far away"
    result, was_cut = cut(text, 30)
    assert was_cut
    assert result == "The quick brown fox jumps over..."
    assert len(result) <= 30 + 3
    assert cut(text, 34) == ("The quick brown fox jumps over the...", True)
    assert cut(text, 33) == ("The quick brown fox jumps over...", True)
    assert cut(text, 28) == ("The quick brown fox jumps...", True)


def test_latin_cut_strips_trailing_punctuation() -> None:
    assert cut("alpha beta, gamma delta epsilon", 12) == ("alpha beta...", True)
    assert cut("alpha beta; gamma delta", 11) == ("alpha beta...", True)


def test_space_right_after_the_limit_is_a_boundary() -> None:
    assert cut("aaaa bbbb cccc", 9) == ("aaaa bbbb...", True)


def test_cjk_cut_without_spaces() -> None:
    text = "这是一个没有空格的很长的中文句子我们需要在合适的地方把它截断以免太长了" * 3
    result, was_cut = cut(text, 20)
    assert was_cut
    assert result == text[:20] + "..."
    assert len(result) <= 20 + 3


def test_cjk_cut_after_clause_punctuation() -> None:
    text = "这是一个很长的中文句子，没有空格。我们需要在合适的地方截断它，以免太长"
    result, was_cut = cut(text, 20)
    assert was_cut
    assert result == "这是一个很长的中文句子，没有空格..."
    assert len(result) <= 23


def test_cjk_far_punctuation_is_ignored() -> None:
    text = "短句，" + "长" * 60
    assert cut(text, 40) == (text[:40] + "...", True)


def test_custom_ellipsis() -> None:
    assert cut("one two three four", 9, "…") == ("one two…", True)


def test_cut_does_not_split_combining_marks() -> None:
    text = "e\u0301" * 30  # é as e + combining acute
    result, _ = cut(text, 11)
    body = result.removesuffix("...")
    assert not body.endswith("e")


@given(st.text(), st.integers(min_value=0, max_value=400), st.sampled_from(["...", "…", ""]))
def test_cut_length_bound_and_prefix(text: str, max_chars: int, ellipsis: str) -> None:
    result, was_cut = cut(text, max_chars, ellipsis)
    assert len(result) <= max_chars + len(ellipsis)
    if not was_cut:
        assert result == text
        return
    assert result.endswith(ellipsis)
    body = result[: len(result) - len(ellipsis)]
    assert text.startswith(body)
    assert body == body.rstrip() or not body.strip()


@given(st.text(alphabet=st.sampled_from("abc ,.;:这是。，、"), min_size=1))
def test_cut_prefix_of_clean_text(raw: str) -> None:
    text = clean_text(raw)
    result, was_cut = cut(text, 10)
    body = result.removesuffix("...") if was_cut else result
    assert text.startswith(body)


# --- fold ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello  World", "hello world"),
        ("ＦＵＬＬ　ｗｉｄｔｈ", "full width"),
        ("Straße", "strasse"),
        ("before [code] after", "before after"),
        ("[Formula] x [image] y [图片] z [代码] w [公式]", "x y z w"),
        ("ends with...", "ends with"),
        ("ends with …", "ends with"),
        ("ends with。。。", "ends with"),
        ("ends with [...]", "ends with"),
        ("ends with [ … ]", "ends with"),
        ("three dots... in the middle", "three dots... in the middle"),
        ("", ""),
    ],
)
def test_fold(text: str, expected: str) -> None:
    assert fold(text) == expected


def test_fold_removes_given_placeholders() -> None:
    assert fold("a <CODE> b {math} c", ["<code>", "{math}"]) == "a b c"


def test_fold_of_cut_text_is_prefix_of_fold_of_text() -> None:
    text = "The Quick brown fox [code] jumps over the lazy dog, and then some more words follow."
    excerpt, _ = cut(text, 40)
    assert excerpt.endswith("...")
    assert fold(text).startswith(fold(excerpt))
    assert fold(excerpt) == fold(text[: len(excerpt) - 3])


@given(st.text(alphabet=st.sampled_from("abcDEF ßẞﬁ。，、….!\t"), max_size=200))
def test_fold_of_excerpt_is_prefix_of_fold_of_text(raw: str) -> None:
    text = clean_text(raw)
    excerpt, _ = cut(text, 50)
    assert fold(text).startswith(fold(excerpt))


# --- first_sentence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello world. This is more text.", "Hello world"),
        ("Is this it? Yes.", "Is this it?"),
        ("Wow! Such text.", "Wow!"),
        ("Version 1.2 is out. More later.", "Version 1.2 is out"),
        ("你好世界。这是更多的内容", "你好世界"),
        ("真的吗？是的", "真的吗？"),
        ("no sentence end here", "no sentence end here"),
        ("", ""),
    ],
)
def test_first_sentence(text: str, expected: str) -> None:
    assert first_sentence(text) == expected


def test_first_sentence_cuts_long_text() -> None:
    text = "word " * 40
    result = first_sentence(text, 30)
    assert result.endswith("...")
    assert len(result) <= 33


def test_first_sentence_ignores_sentence_end_past_the_limit() -> None:
    text = "a" * 30 + " " + "b" * 100 + ". Next."
    assert first_sentence(text, 35) == "a" * 30 + "..."


# --- is_truncated ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It goes on...", True),
        ("It goes on…", True),
        ("It goes on [...]", True),
        ("It goes on […]", True),
        ("It goes on (...)", True),
        ("Some text. Read more", True),
        ("Some text. Read More »", True),
        ("Some text. Continue reading →", True),
        ("Some text [Read more]", True),
        ("一些内容……阅读全文", True),
        ("一些内容 查看全文>>", True),
        ("A complete sentence.", False),
        ("Where to read more books", False),
        ("", False),
    ],
)
def test_is_truncated(text: str, expected: bool) -> None:
    assert is_truncated(text) is expected


# --- NFKC with an ASCII shortcut ------------------------------------------------------------------

_NFKC_ALPHABET = st.one_of(
    st.characters(max_codepoint=0x7F),
    st.characters(min_codepoint=0x80, max_codepoint=0x36F),  # Latin-1, accents, combining
    st.sampled_from(
        "\u0301\u0308\u0327\u0338\u3099\u309a\uff0c\uff21\u2460\ufb01\u1100\u1161\u11a8\uac00"
    ),
    st.characters(),
)


@given(st.text(alphabet=_NFKC_ALPHABET, max_size=60))
def test_nfkc_equals_unicodedata(text: str) -> None:
    import unicodedata

    from aggregator.textutil import nfkc

    assert nfkc(text) == unicodedata.normalize("NFKC", text)


def test_nfkc_composes_across_an_ascii_letter_and_a_combining_mark() -> None:
    from aggregator.textutil import nfkc

    assert nfkc("cafe\u0301 ｆｕｌｌ，width ﬁ") == "café full,width fi"


def test_nfkc_of_every_character_of_the_compatibility_blocks() -> None:
    import unicodedata

    from aggregator.textutil import _COMPAT_BLOCKS, nfkc

    for start, end in _COMPAT_BLOCKS:
        for code in range(start, end):
            char = chr(code)
            for text in (char, "中文" + char + "\u0301", "a" + char + "\u3099b"):
                assert nfkc(text) == unicodedata.normalize("NFKC", text), hex(code)


def test_nfkc_of_cjk_text_with_full_width_punctuation_and_a_rarer_character() -> None:
    import unicodedata

    from aggregator.textutil import nfkc

    # "，" and "：" are replaced first; "㈱" (outside the blocks) needs the full normalization.
    for text in ("我们，实验：结果。", "我们，实验㈱结果", "ｆｕｌｌ…width\u00a0x"):
        assert nfkc(text) == unicodedata.normalize("NFKC", text)


def test_fold_of_a_short_text_takes_placeholders_of_any_iterable() -> None:
    # Short texts are folded through a cache: a list or a generator must work as a tuple does.
    text = "Ｔｉｔｌｅ [snippet] here…"
    expected = fold(text, ("[snippet]",))
    assert expected == "title here"
    assert fold(text, ["[snippet]"]) == expected
    assert fold(text, (p for p in ["[snippet]"])) == expected
    assert fold(text) == "title [snippet] here"
