"""Use cases over what is stored, beside refresh: removing sources and pruning old entries.

Both run in one store transaction. A removed source's entries that another source also has
stay, and dedup's own rule (`dedup.representatives`) picks the copy that represents them now.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from aggregator.config import Config
from aggregator.models import Removal
from aggregator.store import Store


def remove_sources(store: Store, names: Collection[str]) -> list[Removal]:
    """Remove these sources' copies and states, in one transaction."""
    from aggregator import dedup

    out: list[Removal] = []
    with store.transaction():
        for name in sorted(names):
            removal = store.remove_source(name)
            if removal.entries_kept:
                store.set_representatives(
                    dedup.representatives(store.entries(removal.entries_kept))
                )
            out.append(removal)
    return out


def unconfigured(config: Config, store: Store) -> set[str]:
    """Source names the store holds copies or a state of that the config no longer has."""
    configured = {s.name for s in config.sources}
    held = {st.name for st in store.states()} | set(store.entry_counts())
    return held - configured


def prune_removed(config: Config, store: Store) -> list[Removal]:
    """Remove what the store holds of sources deleted from the config."""
    gone = unconfigured(config, store)
    return remove_sources(store, gone) if gone else []


def prune_old(config: Config, store: Store, older_than_seconds: int, now: datetime) -> int:
    """Delete entries older than that, except the newest `[feed] max_entries` (the outputs')."""
    return store.prune(now - timedelta(seconds=older_than_seconds), config.feed.max_entries)


def summary(removals: Sequence[Removal]) -> str:
    """One line per removal, as the command line prints it."""
    return "\n".join(
        f"{r.source}: removed {r.copies} cop{'y' if r.copies == 1 else 'ies'}; "
        f"{r.entries_removed} entr{'y' if r.entries_removed == 1 else 'ies'} left the outputs, "
        f"{len(r.entries_kept)} kept (another source has them)"
        for r in removals
    )
