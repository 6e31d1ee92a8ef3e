"""Where text assets are read and written, independent of the working directory.

- Prompt templates and bundled class lists (package data): ``shipped_dir("prompts")`` / ``shipped_dir("knowledge")``.
  The repository's top-level ``prompts/`` and ``knowledge/`` folders are the source (edited and reviewed there);
  a wheel ships them inside the package as ``mmreason/prompts`` and ``mmreason/knowledge`` (see ``setup.py``).
  A source checkout or editable install reads the top-level folders, an installed wheel its own copies.
  ``$MMREASON_PROMPTS`` replaces the prompts folder (e.g. to try edited prompts).
- Curated assets (``<root>/<dataset>/<asset>.jsonl`` + manifest + embeddings): ``knowledge_root(root)`` is
  ``root`` when given (``--knowledge-root``, a run config's field), else ``$MMREASON_KNOWLEDGE``, else the
  checkout's ``knowledge/`` when running from a source checkout (where the project's configs expect them),
  else ``$MMREASON_CACHE/knowledge`` (an installed wheel has no writable project folder).
- The LLM response cache: ``mmreason.llm.paths.response_cache_dir`` (``--cache-dir``, else
  ``$MMREASON_CACHE/llm_responses``); the text-embedding cache: ``embedding_cache_dir()``
  (``$MMREASON_CACHE/embeddings``).

Example:
    >>> from mmreason.assets.paths import shipped_dir
    >>> (shipped_dir("knowledge") / "hmdb51" / "classes.txt").is_file()
    True
"""
from __future__ import annotations

import os
from pathlib import Path

from mmreason.llm.paths import mmreason_cache_dir

_PACKAGE = Path(__file__).resolve().parents[1]   # .../mmreason
_CHECKOUT = _PACKAGE.parent                       # the repository root when running from a source checkout


def _is_checkout() -> bool:
    return (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "knowledge").is_dir()


def shipped_dir(name: str) -> Path:
    """``prompts`` or ``knowledge`` as shipped: the package's copy (wheel) or the checkout's folder (source)."""
    inside = _PACKAGE / name
    return inside if inside.is_dir() else _CHECKOUT / name


def prompts_root() -> Path:
    """``$MMREASON_PROMPTS``, else the shipped prompt templates."""
    env = os.environ.get("MMREASON_PROMPTS")
    return Path(env).expanduser() if env else shipped_dir("prompts")


def knowledge_root(root: str | os.PathLike | None = None) -> Path:
    """Where curated assets are written and read; see the module docstring for the order."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get("MMREASON_KNOWLEDGE")
    if env:
        return Path(env).expanduser()
    return _CHECKOUT / "knowledge" if _is_checkout() else mmreason_cache_dir() / "knowledge"


def embedding_cache_dir() -> Path:
    """The on-disk text-embedding cache of generated assets: ``$MMREASON_CACHE/embeddings``."""
    return mmreason_cache_dir() / "embeddings"
