"""One exception tree for the whole product.

A SourceError is caught per source, stored on the source and reported; it never stops the
other sources. ConfigError, StorageError and EmitError stop the run with one clear line.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AggregatorError(Exception):
    """Base of every error the product reports on purpose."""


class ConfigError(AggregatorError):
    """The configuration file is missing, unreadable or invalid."""


class SourceError(AggregatorError):
    """One source could not be refreshed; the others go on."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.reason = message


class FetchError(SourceError):
    """The source could not be fetched (network, HTTP status, limits, policy)."""

    def __init__(
        self,
        source: str,
        message: str,
        status: int | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(source, message)
        self.status = status  # the HTTP status, when the server answered
        self.retry_after = retry_after  # the Retry-After header verbatim, when sent


class ParseError(SourceError):
    """The body was fetched but could not be read as the expected kind."""


class StorageError(AggregatorError):
    """The store could not be opened, migrated or written."""


class EmitError(AggregatorError):
    """The outputs could not be written."""


class ServeError(AggregatorError):
    """The HTTP server could not listen on its address."""
