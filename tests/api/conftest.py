"""Fixtures for the HTTP-layer tests: the real API server in-process over the fake engine."""

import pytest

from apihelpers import InProcDaemon  # tests/api is on sys.path (rootdir-relative imports)


async def _fake_engine(_dir):
    from fake_engine import FakeEngine  # tests/api is on sys.path (rootdir-relative imports)

    return FakeEngine()


@pytest.fixture
def fake():
    """The HTTP layer over an in-memory engine (no containers, no root needed)."""
    d = InProcDaemon(_fake_engine)
    try:
        yield d
    finally:
        d.close()
