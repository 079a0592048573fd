"""Shared test fixtures."""

from __future__ import annotations

import pytest

from resdyn._torch import one_thread


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread while a module's tests run, restored afterwards.

    The engine tests run many small products; on a busy 2-core machine OpenMP threads spin against
    each other and make them 10-30x slower (measured), while one thread is never much slower.
    """
    with one_thread():
        yield
