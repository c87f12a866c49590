"""Feed values that both feed readers (feedparser's and the lxml fast path) clean alike."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["person", "text_or_none", "ttl_seconds", "unique_names"]

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
