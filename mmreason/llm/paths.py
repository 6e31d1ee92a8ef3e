"""Where the LLM layer keeps its files, independent of the working directory.

- ``mmreason_cache_dir()``: ``$MMREASON_CACHE``, else ``~/.cache/mmreason``: derived files (the converted embedded
  model, the LLM response cache, the text-embedding cache).
- ``response_cache_dir(cache_dir)``: the given folder, else ``$MMREASON_CACHE/llm_responses``. The cache is
  content-addressed (model, revision, prompt, template hash, sampling and sample index are in every key), so
  one shared folder serves every project and working directory without mixing answers up.
- ``IDENTITY_FILE``: the file a local model folder may carry to name its identity (the embedded converter writes
  it), so the same weights get the same cache keys wherever the folder lives.

A leaf module (it imports nothing from ``mmreason``): ``base`` and ``embedded`` both read it, and neither
imports the other back.
"""
from __future__ import annotations

import os
from pathlib import Path

IDENTITY_FILE = "mmreason_model.json"
RESPONSE_CACHE_FOLDER = "llm_responses"


def mmreason_cache_dir() -> Path:
    """``$MMREASON_CACHE`` or ``~/.cache/mmreason``: where converted models and other derived files live."""
    return Path(os.environ.get("MMREASON_CACHE") or Path.home() / ".cache" / "mmreason").expanduser()


def response_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The LLM response cache: ``cache_dir`` when given (a run's ``--cache-dir``), else ``$MMREASON_CACHE/llm_responses``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    return mmreason_cache_dir() / RESPONSE_CACHE_FOLDER
