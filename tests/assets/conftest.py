"""Every asset test also writes its curated files under its own temporary folder, never into the checkout:
``MMREASON_KNOWLEDGE`` points there (``MMREASON_CACHE`` is already the test's own: ``isolated_cache`` in the root
conftest)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_state(isolated_cache, tmp_path, monkeypatch):
    """``{"cache": $MMREASON_CACHE, "knowledge": $MMREASON_KNOWLEDGE}`` of this test (both empty at the start)."""
    monkeypatch.setenv("MMREASON_KNOWLEDGE", str(tmp_path / "knowledge"))
    return {"cache": isolated_cache, "knowledge": tmp_path / "knowledge"}
