"""ICVL test fixtures: a tiny ICVL run trained once per session with the engine on the synthetic task."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test here runs on one torch thread."""
    yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``(run_dir, TrainResult)`` of icvl/tiny_synthetic trained with mmreason.api.train (about 15 s)."""
    import mmreason.api

    from mmreason.utils.threads import torch_threads

    run_dir = tmp_path_factory.mktemp("icvl_tiny_run")
    with torch_threads(1):
        result = mmreason.api.train("icvl/tiny_synthetic", [f"train.output_dir={run_dir}"])
    return run_dir, result
