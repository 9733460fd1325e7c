"""The segment schema of a test, migrated in the session's PostgreSQL, with its pool."""

from __future__ import annotations

import pytest

from tests.integration.segment.test_consumer import Segment


@pytest.fixture
def segment(stack, kafka, schema):
    s = Segment(stack, kafka, schema)
    yield s
    s.pool.close()
