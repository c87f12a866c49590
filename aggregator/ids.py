"""Entry ids: minted from a source's name and its identity of the entry, never changed."""

from __future__ import annotations

import uuid
from hashlib import sha1


def mint_id(source_name: str, key: str) -> str:
    """uuid5(NAMESPACE_URL, source_name + NUL + key) as a URN, the same as normalize mints.

    Computed by hand so that a lone surrogate in a guid cannot make uuid.uuid5 raise.
    """
    name = (source_name + "\x00" + key).encode("utf-8", "surrogatepass")
    digest = sha1(uuid.NAMESPACE_URL.bytes + name, usedforsecurity=False).digest()
    return "urn:uuid:" + str(uuid.UUID(bytes=digest[:16], version=5))
