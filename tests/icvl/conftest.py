"""ICVL test fixtures: a tiny ICVL run trained once per session with the engine on the synthetic task."""
from __future__ import annotations

import pytest
import torch

from mmreason.registry import METHODS

# Until mmreason/methods/__init__.py lists "icvl" (the lead's file), register it for these tests.
if "icvl" not in METHODS:
    import mmreason.methods  # noqa: F401  (fills the registry first)

    if "icvl" not in METHODS:
        METHODS.register_lazy("icvl", "mmreason.methods.icvl:METHOD", help="ICVL (arXiv 2505.01713)")


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on a busy 2-core machine are far slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``(run_dir, TrainResult)`` of icvl/tiny_synthetic trained with mmreason.api.train (about 15 s)."""
    import mmreason.api

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = tmp_path_factory.mktemp("icvl_tiny_run")
        result = mmreason.api.train("icvl/tiny_synthetic", [f"train.output_dir={run_dir}"])
    finally:
        torch.set_num_threads(before)
    return run_dir, result
