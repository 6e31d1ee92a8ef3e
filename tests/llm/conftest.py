"""Session fixtures for the LLM tests: the embedded Gemma 3 270M, converted (if needed) and loaded once."""
from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="session")
def gemma_path():
    """The converted embedded Gemma folder; converts it on first use and prints how long that took."""
    from mmreason.llm.embedded import embedded_llm_path

    start = time.perf_counter()
    path = embedded_llm_path()
    print(f"\n[embedded Gemma 3 270M] ready at {path} in {time.perf_counter() - start:.1f} s "
          f"(conversion happens only when the folder is missing)")
    return path


@pytest.fixture(scope="session")
def gemma(gemma_path):
    """``HFBackend("embedded")`` on CPU (float32), loaded once for the session."""
    from mmreason.llm import HFBackend

    start = time.perf_counter()
    backend = HFBackend("embedded", device="cpu", batch_size=4)
    print(f"[embedded Gemma 3 270M] loaded in {time.perf_counter() - start:.1f} s")
    return backend
