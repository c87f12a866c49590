"""Shared test fixtures; the plain helpers they use are in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.store import Store
from tests.helpers import PG, STORES, LocalServer, open_test_store


@pytest.fixture
def server() -> Iterator[LocalServer]:
    s = LocalServer()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A new, empty store, once per implementation."""
    with open_test_store(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """The PostgreSQL databases a test made are dropped after it."""
    yield
    if PG.created:
        PG.drop_created()


@pytest.fixture(autouse=True, scope="session")
def _drop_template_database() -> Iterator[None]:
    yield
    PG.drop_template()
