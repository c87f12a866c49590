"""Entry ids: minted from a post's date, its source's name and the source's key for it, never
changed afterwards.

An id is a UUID in RFC 9562's custom layout (version 8), as a URN:
- the first 48 bits are the post's date in milliseconds since 1970 (UTC): its published date,
  else when it was first seen;
- the other 74 bits (besides version and variant) come from sha1(NAMESPACE_URL, source NUL key),
  as uuid5 does, and tell apart posts of the same millisecond.

Why the date comes first: the store indexes entries by id, and copies by the id of their entry.
A random id (uuid5) wrote one random page of each index for every new entry; once the indexes
outgrow the page cache those pages are read back and written again at every commit. Ids of new
posts start with about the same date, so they go to the end of both indexes (bench/README.md
has the figures).

Why the date is the post's, not the clock's: the same post from the same source gets the same
id again in a store built anew from the same feeds, as long as the feed keeps its date. (An
undated post is dated when it is first seen, so a new store gives it a new id.)
"""

from __future__ import annotations

import uuid
from datetime import datetime
from hashlib import sha1

_MAX_MS = 2**48 - 1
_HASH_BITS = 2**80 - 1
_VERSION = 0xF << 76
_VARIANT = 0x3 << 62


def mint_id(source_name: str, key: str, published: datetime | None, first_seen: datetime) -> str:
    """The id of a post that `source_name` knows by `key` (aware datetimes).

    sha1 is computed by hand, as uuid.uuid5 would, so that a lone surrogate in a guid cannot make
    it raise.
    """
    name = (source_name + "\x00" + key).encode("utf-8", "surrogatepass")
    digest = sha1(uuid.NAMESPACE_URL.bytes + name, usedforsecurity=False).digest()
    ms = min(max(int((published or first_seen).timestamp() * 1000), 0), _MAX_MS)
    value = (ms << 80) | (int.from_bytes(digest[:10], "big") & _HASH_BITS)
    value = (value & ~_VERSION & ~_VARIANT) | (8 << 76) | (0x2 << 62)
    return "urn:uuid:" + str(uuid.UUID(int=value))
