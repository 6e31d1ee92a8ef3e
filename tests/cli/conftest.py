"""CLI tests call ``main()`` in-process; it configures the ``mmreason`` logger (a stderr handler, a level by
process rank). Restore it after each test so other tests see the library's default logging."""
from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _restore_mmreason_logger():
    logger = logging.getLogger("mmreason")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
