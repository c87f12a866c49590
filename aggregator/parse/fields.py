"""Feed values that both feed readers (feedparser's and the lxml fast path) clean alike."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["author_name", "person", "split_person", "text_or_none", "ttl_seconds", "unique_names"]

# An e-mail address as people write them in RSS <author> and dc:creator: anything without
# spaces, brackets or parentheses around one "@" and a dotted domain (any TLD length).
_ADDRESS = r"(?:mailto:)?(?P<email>[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+\.[^\s@<>()\[\],;:\"]+)"
_PERSON_SHAPES = (
    re.compile(rf"^{_ADDRESS}\s*\((?P<name>[^()]*)\)$"),  # alice@x.example (Alice Ng)
    re.compile(rf"^(?P<name>[^<>]*?)\s*<\s*{_ADDRESS}\s*>$"),  # Alice Ng <alice@x.example>
    re.compile(rf"^(?P<name>[^()]*?)\s*\(\s*{_ADDRESS}\s*\)$"),  # Alice Ng (alice@x.example)
    re.compile(rf"^\((?P<name>[^()]*)\)\s*{_ADDRESS}$"),  # (Alice Ng) alice@x.example
    re.compile(rf"^<?{_ADDRESS}>?$"),  # alice@x.example
)

_SY_PERIOD_SECONDS = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 7 * 86400,
    "monthly": 30 * 86400,
    "yearly": 365 * 86400,
}


def text_or_none(value: object) -> str | None:
    """A stripped non-empty string, or None."""
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return stripped or None


def person(name: object, email: object) -> str | None:
    """A feed's own author as one string: "Name <email>", or whichever of the two it gave."""
    name, email = text_or_none(name), text_or_none(email)
    if name and email and email not in name:
        return f"{' '.join(name.split())} <{email}>"
    return " ".join(name.split()) if name else email


def split_person(text: str) -> tuple[str | None, str | None]:
    """An RSS author string split into (name, e-mail), in each of its usual shapes:
    "email (Name)", "Name <email>", "Name (email)", "(Name) email", "email" and "Name".

    Parts that are empty come back as None; a string in no known shape is all name.
    """
    value = " ".join(text.split())
    for shape in _PERSON_SHAPES:
        match = shape.match(value)
        if match is not None:
            name = match.groupdict().get("name")
            return (text_or_none(name.strip(" \"'")) if name else None), match.group("email")
    return text_or_none(value), None


def author_name(text: str) -> str | None:
    """The name a reader shows for an RSS author string: its name, else its e-mail address."""
    name, email = split_person(text)
    return name or email


def unique_names(values: Iterable[object]) -> tuple[str, ...]:
    """Strip, collapse inner whitespace, drop empties and case-insensitive repeats."""
    seen: set[str] = set()
    kept: list[str] = []
    for value in values:
        if not isinstance(value, str):
            continue
        text = " ".join(value.split())
        if text and text.casefold() not in seen:
            seen.add(text.casefold())
            kept.append(text)
    return tuple(kept)


def ttl_seconds(ttl: object, update_period: object, update_frequency: object) -> int | None:
    """RSS <ttl> (minutes), else sy:updatePeriod / sy:updateFrequency, in seconds."""
    minutes = _positive_int(ttl)
    if minutes is not None:
        return minutes * 60
    period = _SY_PERIOD_SECONDS.get(str(update_period or "").strip().lower())
    if period is None:
        return None
    frequency = _positive_int(update_frequency) or 1
    return max(period // frequency, 1)


def _positive_int(value: object) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number > 0 else None
