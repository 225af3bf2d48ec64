"""Shared test set-up: Trio through anyio's pytest plugin."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Every async test runs on Trio. A module that needs virtual time
    overrides this with ``("trio", {"clock": MockClock(autojump_threshold=0)})``.
    """
    return "trio"
