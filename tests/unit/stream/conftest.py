"""Fixtures of the worker's unit tests."""

import pytest


@pytest.fixture(scope="module")
def redis_server():
    """A real Redis (the embedded ``redis-server``) for the tests of one module."""
    from fraudstream.stream.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server
