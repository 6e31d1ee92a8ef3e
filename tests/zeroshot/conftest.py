"""Fixtures of the zero-shot tests: one thread (the CI machine has 2 busy cores), tiny CLIP towers, configs."""
from pathlib import Path

import pytest

METHODS = Path(__file__).resolve().parents[2] / "mmreason" / "methods"


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test here runs on one torch thread."""
    yield


@pytest.fixture(scope="session")
def tiny64():
    """A randomly initialised mmr-tiny-64 CLIP (4x4 patch grid, width 64)."""
    from mmreason.clip import build_clip

    return build_clip("mmr-tiny-64", init_seed=3)


@pytest.fixture(scope="session")
def tiny_experiment():
    """``tiny_experiment(method, **overrides)``: the method's packaged tiny_synthetic experiment, overridden."""
    return _tiny_experiment


def _tiny_experiment(method: str, **overrides):
    from mmreason.config import merge, read_yaml

    if method == "stdd":
        from mmreason.methods.stdd import METHOD
    else:
        from mmreason.methods.open_mede import METHOD
    cfg = merge(METHOD.config_cls(), read_yaml(METHODS / method / "configs" / "tiny_synthetic.yaml"))
    return METHOD, merge(cfg, overrides)
