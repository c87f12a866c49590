"""Text helpers: HTML to plain text, cleaning, cutting, folding for comparison.

Every function here runs once or more per entry, so they favour C-level work (regexes,
str methods, the lexbor parser) over Python loops per character.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from html import unescape as _unescape

from selectolax.lexbor import LexborHTMLParser, LexborNode

__all__ = [
    "ALWAYS_FOLDED_PLACEHOLDERS",
    "FORMULA_CLASSES",
    "clean_text",
    "cut",
    "first_sentence",
    "fold",
    "html_to_text",
    "is_truncated",
    "nfkc",
]

# Elements whose content is never text a reader sees.
_DROPPED_TAGS = frozenset(
    {
        "-comment",
        "head",
        "script",
        "style",
        "noscript",
        "template",
        "iframe",
        "svg",
        "object",
        "embed",
        "canvas",
        "audio",
        "video",
        "select",
        "datalist",
    }
)
# Elements that start a new line when rendered: their text must not glue to a neighbour's.
_BLOCK_TAGS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "caption",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "legend",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
        "textarea",
        "img",  # an image between two words separates them
    }
)
# Classes that mark rendered math (KaTeX, MathJax 2 and 3).
FORMULA_CLASSES: frozenset[str] = frozenset(
    {
        "katex",
        "katex-display",
        "katex-mathml",
        "MathJax",
        "MathJax_Display",
        "MathJax_Preview",
        "MathJax_SVG",
        "MathJax_SVG_Display",
        "MathJax_CHTML",
        "mjx-container",
        "math-tex",
    }
)
_FORMULA_TAGS = frozenset({"math", "mjx-container"})
# Elements looked at closely: dropped, replaced by a placeholder, or possibly so (<code>).
_SPECIAL_TAGS = _DROPPED_TAGS | _FORMULA_TAGS | {"pre", "code"}
# KaTeX and MathJax put their classes on these elements only.
_FORMULA_CLASS_TAGS = frozenset({"span", "div"})
# Substrings one of which every FORMULA_CLASSES name contains (`in` beats a regex here).
_FORMULA_HINTS = ("katex", "MathJax", "mjx-container", "math-tex")
ALWAYS_FOLDED_PLACEHOLDERS: tuple[str, ...] = (
    "[code]",
    "[formula]",
    "[代码]",
    "[公式]",
    "[图片]",
    "[image]",
)

# Display LaTeX written straight into the text: \[ … \] and $$ … $$ (inline $…$ is too
# ambiguous with prices to touch). A match never runs past another opener and is bounded in
# length, which keeps text full of unclosed openers linear.
_DISPLAY_LATEX = re.compile(
    r"\\\[(?:[^\\]|\\(?![\[\]])){1,4000}?\\\]|\$\$(?:[^$]|\$(?!\$)){1,4000}?\$\$"
)
# C0/C1 controls except whitespace (which the final split turns into single spaces), lone
# surrogates, bidi embeddings/overrides/isolates, zero-width space, word joiner, BOM and the
# two non-characters XML cannot carry.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\u200b\u202a-\u202e\u2060"
    "\u2066-\u2069\ufeff\ufffe\uffff]"
)
_SPACE = re.compile(r"\s")
# Places where a cut looks natural: after CJK sentence/clause punctuation.
_CJK_BREAK = re.compile(r"[。！？；，、：…]")
# Stripped from the end of a cut text before the ellipsis: white space of any kind and
# punctuation ("!" and "?" stay).
_TRAILING_JUNK = re.compile(r"[\s,;:.\-–—、，；：…·。]+$")
# A sentence end: Latin punctuation followed by a space or the end, or CJK punctuation.
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|[。！？]")
_TRUNCATION_TAIL = re.compile(
    r"(?:\.\.\.|…|。。。"
    r"|\b(?:read more|read the rest|continue reading|keep reading|read full (?:article|post|story))"
    r"|阅读全文|查看全文|阅读更多|继续阅读|展开全文)"
    r"[\s\W]*$",
    re.IGNORECASE,
)
_FOLDED_ELLIPSIS = re.compile(r"(?:\.{3,}|。{3,}|\[\s*\.{3}\s*\]|\(\s*\.{3}\s*\))\s*$")


def html_to_text(html: str, *, code_placeholder: str, formula_placeholder: str) -> str:
    """Plain text of an HTML fragment, with code blocks and formulas replaced by placeholders.

    Scripts, styles and other invisible elements are dropped; block elements separate their
    text with a space; entities are decoded; display LaTeX in the text (\\[…\\], $$…$$)
    becomes the formula placeholder too. Works on broken HTML; the HTML is never cut.
    """
    if "<" not in html:  # no markup: spare the parser, whose set-up alone costs ~20 µs
        text = _unescape(html) if "&" in html else html
        return _finish(text, code_placeholder, formula_placeholder)
    # scripting=True: <noscript> content is raw text, as in a browser running scripts, so
    # it stays inside the element that is dropped.
    tree = LexborHTMLParser(html, scripting=True)
    pieces: list[str] = []
    check_classes = any(hint in html for hint in _FORMULA_HINTS)
    _walk(tree.root, pieces, code_placeholder, formula_placeholder, check_classes)
    return _finish("".join(pieces), code_placeholder, formula_placeholder)


def _finish(text: str, code_placeholder: str, formula_placeholder: str) -> str:
    # A one-character `in` is the cheapest pre-filter, so it goes first.
    if ("\\" in text and "\\[" in text) or ("$" in text and "$$" in text):
        text = _DISPLAY_LATEX.sub(f" {formula_placeholder} ", text)
    text = clean_text(text)
    for placeholder in (code_placeholder, formula_placeholder):
        if placeholder and placeholder in text:
            # "[formula] ," reads badly: punctuation after a placeholder sticks to it.
            text = _space_before_punctuation(placeholder).sub(placeholder, text)
    return text


@lru_cache(maxsize=32)
def _space_before_punctuation(placeholder: str) -> re.Pattern[str]:
    return re.compile(re.escape(placeholder) + r" (?=[,.;:!?)\]，。；：！？、）])")


def _walk(
    root: LexborNode | None, out: list[str], code: str, formula: str, check_classes: bool
) -> None:
    """Append the visible text under `root` to `out`.

    One flat pass over lexbor's depth-first traversal (a Python recursion per element costs
    far more, and would overflow on deeply nested broken markup). A subtree that is dropped
    or replaced is skipped by remembering the node that follows it. `check_classes` is False
    when no formula class name occurs in the markup, sparing an attribute read per element.
    """
    if root is None:
        return
    append = out.append
    block_tags = _BLOCK_TAGS
    resume_at = 0  # mem_id of the node where a skipped subtree ends; 0: not skipping
    for node in root.traverse(include_text=True):
        if resume_at:
            if node.mem_id != resume_at:
                continue
            resume_at = 0
        tag = node.tag
        if tag == "-text":
            content = node.text_content
            if content:
                # The traversal has no "end of element" event: a block that just ended is
                # this node's previous sibling. Text starting with a space needs no check.
                if not content[0].isspace():
                    previous = node.prev
                    if previous is not None and previous.tag in block_tags:
                        append(" ")
                append(content)
            continue
        is_formula = check_classes and tag in _FORMULA_CLASS_TAGS and _has_formula_class(node)
        if tag in block_tags and not is_formula:
            append(" ")
            continue
        previous = node.prev
        if previous is not None and previous.tag in block_tags:
            append(" ")
        placeholder = formula if is_formula else _special_placeholder(node, tag, code, formula)
        if placeholder is None:
            continue  # an ordinary inline element: its text follows
        if placeholder:
            _append_placeholder(out, placeholder)
        resume_at = _following(node)
        if resume_at < 0:
            return


def _special_placeholder(node: LexborNode, tag: str | None, code: str, formula: str) -> str | None:
    """What stands for an element: a placeholder, "" when it is dropped, None when it is an
    ordinary element whose content is read."""
    if tag not in _SPECIAL_TAGS:
        return None
    if tag in _FORMULA_TAGS:
        return formula
    if tag == "script":
        return formula if (node.attributes.get("type") or "").startswith("math/tex") else ""
    if tag in _DROPPED_TAGS:
        return ""
    if tag == "pre" or "\n" in node.text():  # <pre>, or a <code> spanning lines
        return code
    return None  # inline <code>


def _has_formula_class(node: LexborNode) -> bool:
    classes = node.attributes.get("class")
    return classes is not None and not FORMULA_CLASSES.isdisjoint(classes.split())


def _following(node: LexborNode) -> int:
    """mem_id of the first node after `node`'s subtree in document order; -1 at the end."""
    current: LexborNode | None = node
    while current is not None:
        sibling = current.next
        if sibling is not None:
            return sibling.mem_id
        current = current.parent
    return -1


def _append_placeholder(out: list[str], placeholder: str) -> None:
    # MathJax 2 renders one formula as a preview, a rendering and a source script: one
    # placeholder is enough when they follow each other with only space in between.
    for previous in reversed(out):
        if previous.isspace() or not previous:
            continue
        if previous == f" {placeholder} ":
            return
        break
    out.append(f" {placeholder} ")


def clean_text(text: str) -> str:
    """Remove invisible and control characters and collapse whitespace runs to one space."""
    text = " ".join(text.split())
    # Every character _INVISIBLE matches is non-printable; the check is cheaper than the
    # regex, and removing characters may join two spaces, hence the second collapse.
    if not text.isprintable():
        text = " ".join(_INVISIBLE.sub("", text).split())
    return text


def cut(text: str, max_chars: int, ellipsis: str = "...") -> tuple[str, bool]:
    """Cut `text` to at most `max_chars` characters at a natural boundary, then add `ellipsis`.

    Returns the text and whether it was cut. The boundary is looked for in the last fifth of
    the limit: the last space, or just after CJK punctuation; failing both the cut is exact.
    Trailing spaces and punctuation such as ",;:" are stripped before the ellipsis.
    """
    if len(text) <= max_chars:
        return text, False
    max_chars = max(max_chars, 0)
    end = _boundary(text, max_chars)
    head = _TRAILING_JUNK.sub("", text[:end])
    if not head:  # nothing but junk before the boundary: cut exactly instead
        head = text[:max_chars].rstrip()
    return head + ellipsis, True


def _boundary(text: str, max_chars: int) -> int:
    """Where to cut: an index <= max_chars (text is longer than max_chars)."""
    # The last fifth of the limit, but a few characters at least when the limit is small.
    offset = max(max_chars - max(max_chars // 5, min(8, max_chars // 2), 1), 0)
    # One character past the limit is looked at too: a space there is a clean word end.
    window = text[offset : max_chars + 1]
    best = -1
    space = _last_match(_SPACE, window)
    if space >= 0:
        best = offset + space  # cut before the space
    cjk = _last_match(_CJK_BREAK, window[:-1])
    if cjk >= 0:
        best = max(best, offset + cjk + 1)  # cut after the punctuation
    if best > 0:
        return best
    return _avoid_combining(text, max_chars)


def _last_match(pattern: re.Pattern[str], text: str) -> int:
    last = -1
    for match in pattern.finditer(text):
        last = match.start()
    return last


def _avoid_combining(text: str, end: int) -> int:
    # Do not separate a base letter from its combining accents.
    start = end
    while end > 0 and unicodedata.combining(text[end]):
        end -= 1
    return end if end > 0 else start


@lru_cache(maxsize=64)
def _folded_placeholders(placeholders: tuple[str, ...]) -> tuple[str, ...]:
    folded = {
        unicodedata.normalize("NFKC", p).casefold()
        for p in (*ALWAYS_FOLDED_PLACEHOLDERS, *placeholders)
    }
    folded.discard("")
    # Longest first, so a placeholder containing another one is removed whole.
    return tuple(sorted(folded, key=len, reverse=True))


# Blocks whose compatibility characters turn up in ordinary text: Latin-1 (no-break space),
# general punctuation ("…"), letterlike symbols, enclosed numbers, CJK squares, ligatures,
# CJK compatibility forms and the full-width and half-width forms ("，", "：", "Ａ").
_COMPAT_BLOCKS = (
    (0x00A0, 0x0100),
    (0x2000, 0x2500),
    (0x3000, 0x3400),
    (0xFB00, 0xFB50),
    (0xFE10, 0xFE70),
    (0xFF00, 0xFFF0),
)


@lru_cache(maxsize=1)
def _compat_table() -> tuple[re.Pattern[str], dict[str, str]]:
    """The characters of _COMPAT_BLOCKS that NFKC changes, each with its NFKC form."""
    table: dict[str, str] = {}
    for start, end in _COMPAT_BLOCKS:
        for code in range(start, end):
            char = chr(code)
            if not unicodedata.is_normalized("NFKC", char):
                table[char] = unicodedata.normalize("NFKC", char)
    pattern = re.compile("[" + "".join(re.escape(c) for c in table) + "]")
    return pattern, table


def nfkc(text: str) -> str:
    """unicodedata.normalize("NFKC", text), faster for the usual text.

    ASCII text, which NFKC never changes, is returned as is; so is text that is normalized
    already. Otherwise the common compatibility characters (full-width punctuation in CJK
    text, "…", no-break spaces) are replaced by their NFKC forms first: the result is
    compatibility-equivalent to the text, so both have the same NFKC form, and when the result
    is normalized (checked exactly) it is that form, without a full decomposition and
    recomposition of the text, which costs about ten times more.
    """
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return text
    pattern, table = _compat_table()
    text = pattern.sub(lambda m: table[m[0]], text)
    if unicodedata.is_normalized("NFKC", text):
        return text
    return unicodedata.normalize("NFKC", text)


_CACHED_FOLD_CHARS = 256  # shorter texts (titles) are folded once and remembered


def fold(text: str, placeholders: Iterable[str] = ()) -> str:
    """The comparison form of a text: NFKC, case-folded, without placeholders, without a
    trailing ellipsis, whitespace collapsed."""
    if len(text) <= _CACHED_FOLD_CHARS:
        # The dedup stage folds the title of every candidate it compares, and the same
        # stored titles come up again and again within a refresh.
        return _fold_short(text, tuple(placeholders))
    return _fold(text, placeholders)


@lru_cache(maxsize=16384)
def _fold_short(text: str, placeholders: tuple[str, ...]) -> str:
    return _fold(text, placeholders)


def _fold(text: str, placeholders: Iterable[str]) -> str:
    text = nfkc(text).casefold()
    for placeholder in _folded_placeholders(tuple(placeholders)):
        if placeholder in text:
            # Placeholders usually stand between single spaces: remove one space with them.
            text = text.replace(f" {placeholder} ", " ").replace(placeholder, " ")
    # Clean text has nothing to collapse; checking is cheaper than splitting and joining.
    if "  " in text or text[:1] == " " or text[-1:] == " " or not text.isprintable():
        text = " ".join(text.split())
    # NFKC already turned "…" into "..."; look only at the tail to stay linear.
    tail = text[-16:]
    match = _FOLDED_ELLIPSIS.search(tail)
    if match:
        text = text[: len(text) - len(tail) + match.start()].rstrip()
    return text


def first_sentence(text: str, max_chars: int = 80) -> str:
    """A title made from text: its first sentence, or its start cut at `max_chars`.

    A closing "." or "。" is dropped (titles do not end with one); "!" and "?" stay.
    """
    head = text[: 4 * max_chars + 64]  # a title needs only the start of a long text
    cleaned = clean_text(head)
    if len(head) < len(text) and len(cleaned) <= max_chars:
        cleaned = clean_text(text)  # the start was mostly whitespace or invisible characters
    match = _SENTENCE_END.search(cleaned, 0, max_chars + 1)
    if match and match.end() <= max_chars:
        sentence = cleaned[: match.end()]
        return sentence.rstrip(".。").rstrip() or sentence
    return cut(cleaned, max_chars)[0]


def is_truncated(text: str) -> bool:
    """Whether text ends like a teaser: "...", "…", "[…]", "Read more", "阅读全文"…"""
    tail = text[-40:].rstrip()
    return bool(tail) and _TRUNCATION_TAIL.search(tail) is not None
