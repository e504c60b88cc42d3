"""Fixtures for the actor runtime's tests; the probe actors live in `supervision_lab`."""

from __future__ import annotations

import pytest
from supervision_lab import Lab


@pytest.fixture
def lab() -> Lab:
    """A fresh shared log for probe actors."""
    return Lab()
