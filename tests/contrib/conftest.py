from __future__ import annotations

import pytest


@pytest.fixture
def memory_url(namespace: str) -> str:
    return f"memory://{namespace}"
