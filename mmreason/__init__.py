"""mmreason: LLM/VLM-centric video understanding, ten methods on shared parts.

The public API is re-exported lazily, so ``import mmreason`` stays fast and never imports torch, vllm or faiss:

    >>> import mmreason
    >>> sorted(mmreason.list_methods())[:2]   # doctest: +SKIP
    ['adsm', 'cbcg']
    >>> result = mmreason.train("corm/tiny_synthetic", ["train.output_dir=runs/demo"])   # doctest: +SKIP
"""
from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "train": "mmreason.api",
    "evaluate": "mmreason.api",
    "build_model": "mmreason.api",
    "load_experiment": "mmreason.api",
    "list_methods": "mmreason.api",
    "list_configs": "mmreason.api",
    "generate_assets": "mmreason.api",
    "load_assets": "mmreason.api",
    "Anticipator": "mmreason.api",
    "list_runs": "mmreason.api",
    "convert_checkpoint": "mmreason.api",
    "extract_features": "mmreason.api",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mmreason' has no attribute {name!r}")


def __dir__():
    return __all__
