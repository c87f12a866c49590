"""Records as JSON: the excerpts and source states that crawl workers stage in the database.

Only the two record types that cross from one worker to another are encoded, field by field
from their dataclass definitions: datetimes as ISO 8601 strings, tuples as lists. Decoding
builds the frozen dataclass again and rejects a document whose fields do not match it, so a
staged row written by another version of the program fails loudly instead of being misread.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, TypeVar

from aggregator.models import Excerpt, SourceState

__all__ = ["decode_excerpt", "decode_state", "encode_excerpt", "encode_state"]

T = TypeVar("T", Excerpt, SourceState)


def _kinds(cls: type[Any]) -> dict[str, str]:
    """Field name -> "datetime", "tuple" or "" (kept as it is), from the annotations."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        hint = str(f.type)
        out[f.name] = "datetime" if "datetime" in hint else "tuple" if "tuple" in hint else ""
    return out


_EXCERPT = _kinds(Excerpt)
_STATE = _kinds(SourceState)


def _encode(record: Any, kinds: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in kinds.items():
        value = getattr(record, name)
        if kind == "datetime" and value is not None:
            value = value.isoformat()
        elif kind == "tuple":
            value = list(value)
        out[name] = value
    return out


def _decode(cls: type[T], doc: dict[str, Any], kinds: dict[str, str]) -> T:
    if set(doc) != set(kinds):
        raise ValueError(f"not a {cls.__name__} record: fields {sorted(set(doc) ^ set(kinds))}")
    values: dict[str, Any] = {}
    for name, kind in kinds.items():
        value = doc[name]
        if kind == "datetime" and value is not None:
            value = datetime.fromisoformat(value)
        elif kind == "tuple":
            value = tuple(value)
        values[name] = value
    return cls(**values)


def encode_excerpt(e: Excerpt) -> dict[str, Any]:
    return _encode(e, _EXCERPT)


def decode_excerpt(doc: dict[str, Any]) -> Excerpt:
    return _decode(Excerpt, doc, _EXCERPT)


def encode_state(s: SourceState) -> dict[str, Any]:
    return _encode(s, _STATE)


def decode_state(doc: dict[str, Any]) -> SourceState:
    return _decode(SourceState, doc, _STATE)
