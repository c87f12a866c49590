"""aggregator: merge feeds, pages and text captures into one deduplicated Atom feed."""

__version__ = "0.1.0"
USER_AGENT = f"aggregator/{__version__} (+https://github.com/aggregator-project/aggregator)"
