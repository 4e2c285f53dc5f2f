"""Fixtures of the tests that run the server as real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import ServerProcess


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """The server processes a test starts, stopped when it ends, however it ends."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()
