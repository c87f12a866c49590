"""Short words for a reader about a source's error.

A stored error message says exactly what went wrong, for the person who runs the aggregator
(`aggregator sources` shows it whole): "cannot connect: [Errno 111] Connection refused". The
public page says what it means in a few plain words instead ("the server refused the
connection"), and never shows addresses, paths or exception text.
"""

from __future__ import annotations

import re

__all__ = ["plain_words"]

_HTTP_STATUS = re.compile(r"^HTTP (\d{3})\b")
_HTTP_WORDS = {
    401: "access refused (401)",
    403: "access refused (403)",
    404: "not found (404)",
    410: "gone for good (410)",
    429: "too many requests (429)",
}
# (what the message starts with or contains, the words); the first that fits wins.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (r"^cannot connect: cannot resolve", "the server's name could not be found"),
        (r"^cannot connect: .*(refused|Errno 111|Errno 61\b)", "the server refused the connection"),
        (r"^cannot connect", "the server could not be reached"),
        (
            r"^(connection timed out|no response within|response not complete within"
            r"|response stalled)",
            "the server did not answer in time",
        ),
        (r"^TLS error", "the secure connection failed"),
        (r"^(response too large|response larger|file larger)", "the source is too large"),
        (r"^robots\.txt disallows", "the site's robots.txt does not allow it"),
        (r"^refused: .*private", "the address is not allowed"),
        (r"redirect", "the source redirects too often or unsafely"),
        (r"^(file not found|is a folder)", "not found"),
        (r"^(reading the response failed|request failed)", "the download failed"),
        (r"^(selector|invalid CSS selector)", "the page no longer looks as expected"),
        (r"^parsing took longer", "the feed took too long to read"),
        (r"^internal error", "an internal error (see the log)"),
    )
)
_UNREADABLE = "the feed could not be read"


def plain_words(error: str | None) -> str | None:
    """The few words the public page shows for a stored error message (None for None)."""
    if error is None:
        return None
    match = _HTTP_STATUS.match(error)
    if match:
        status = int(match.group(1))
        if status in _HTTP_WORDS:
            return _HTTP_WORDS[status]
        if status >= 500:
            return f"the server had a problem ({status})"
        return f"the server answered {status}"
    for pattern, words in _RULES:
        if pattern.search(error):
            return words
    return _UNREADABLE
