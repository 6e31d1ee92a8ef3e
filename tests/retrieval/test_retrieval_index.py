"""VectorIndex over real FAISS: exactness against numpy brute force, HNSW/IVF recall, ids, metadata, save/load."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from mmreason.retrieval import VectorIndex


def brute_force(bank: np.ndarray, queries: np.ndarray, k: int, metric: str):
    b, q = bank.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        b, q = b / np.linalg.norm(b, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        scores = ((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # [Q, N]
        order = np.argsort(scores, axis=1)[:, :k]
    else:
        scores = q @ b.T
        order = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((3000, 32)).astype(np.float32), rng.standard_normal((64, 32)).astype(np.float32)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("backend", ["faiss", "numpy"])
def test_flat_search_equals_brute_force(data, metric, backend):
    bank, queries = data
    index = VectorIndex(32, kind="flat", metric=metric, backend=backend)
    index.add(bank)
    scores, ids = index.search(queries, 10)
    exp_scores, exp_ids = brute_force(bank, queries, 10, metric)
    assert scores.shape == ids.shape == (64, 10) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, exp_ids)
    np.testing.assert_allclose(scores, exp_scores, rtol=1e-4, atol=1e-4)


def test_hnsw_recall_at_10_is_high(data):
    bank, queries = data
    index = VectorIndex(32, kind="hnsw", metric="ip", hnsw_m=16, ef_construction=64, ef_search=64)
    index.add(bank)
    _, ids = index.search(queries, 10)
    assert recall_at_k(ids, brute_force(bank, queries, 10, "ip")[1]) >= 0.95


def test_ivf_trains_on_first_add_and_is_exact_when_probing_every_list(data):
    bank, queries = data
    with pytest.raises(ValueError, match="at least 64 vectors"):
        VectorIndex(32, kind="ivf", ivf_nlist=64).add(bank[:10])
    index = VectorIndex(32, kind="ivf", metric="ip", ivf_nlist=64, nprobe=64)
    index.add(bank)
    _, ids = index.search(queries, 10)
    np.testing.assert_array_equal(ids, brute_force(bank, queries, 10, "ip")[1])
    index.nprobe = 4  # fewer lists: approximate, still far above chance (10/3000)
    _, ids = index.search(queries, 10)
    assert 0.2 < recall_at_k(ids, brute_force(bank, queries, 10, "ip")[1]) < 1.0


def test_ids_metadata_and_missing_results(data):
    bank, _ = data
    index = VectorIndex(32, metric="cosine")
    index.add(bank[:3], ids=[100, 200, 300], metadata=[{"clip": "a"}, {"clip": "b"}, {"clip": "c"}])
    index.add(bank[3:5])  # default ids continue after the largest id; metadata None
    assert len(index) == 5 and index.ids.tolist() == [100, 200, 300, 301, 302]
    scores, ids = index.search(bank[1], 7)  # a single query vector, k beyond the index size
    assert ids[0, 0] == 200 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert (ids[0, 5:] == -1).all()
    hits = index.search_with_metadata(bank[[2, 4]], 7)
    assert len(hits[0]) == 5  # missing results dropped
    assert hits[0][0] == {"id": 300, "score": pytest.approx(1.0, abs=1e-5), "metadata": {"clip": "c"}}
    assert hits[1][0]["id"] == 302 and hits[1][0]["metadata"] is None


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(tmp_path, data, kind):
    bank, queries = data
    index = VectorIndex(32, kind=kind, metric="cosine", ivf_nlist=32, nprobe=8, ef_search=40)
    index.add(bank, ids=np.arange(len(bank)) * 2, metadata=[{"i": i} for i in range(len(bank))])
    before = index.search(queries, 10)
    index.save(tmp_path / "bank")
    index.save(tmp_path / "bank")  # overwriting replaces the folder atomically
    loaded = VectorIndex.load(tmp_path / "bank")
    assert len(loaded) == len(index) and loaded.config() == index.config()
    after = loaded.search(queries, 10)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    assert loaded.search_with_metadata(queries[:1], 1)[0][0]["metadata"] == {"i": int(before[1][0, 0]) // 2}
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["bank"]  # no temporary leftovers


def test_numpy_backend_save_load(tmp_path, data):
    bank, queries = data
    index = VectorIndex(32, backend="numpy")
    index.add(bank)
    index.save(tmp_path / "np")
    loaded = VectorIndex.load(tmp_path / "np")
    assert loaded.backend == "numpy"
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], index.search(queries, 5)[1])


def test_bad_input_raises_clear_errors(tmp_path, data):
    bank, _ = data
    index = VectorIndex(32)
    with pytest.raises(ValueError, match="empty index"):
        index.search(bank[:1], 3)
    with pytest.raises(ValueError, match=r"\[n, 32\]"):
        index.add(np.zeros((4, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.full((1, 32), np.nan))
    with pytest.raises(ValueError, match="metadata"):
        index.add(bank[:2], metadata=[{}])
    with pytest.raises(ValueError, match="kind"):
        VectorIndex(32, kind="lsh")
    with pytest.raises(ValueError, match="numpy backend"):
        VectorIndex(32, kind="hnsw", backend="numpy")
    with pytest.raises(FileNotFoundError, match="no_index"):
        VectorIndex.load(tmp_path / "no_index")
    if faiss.get_num_gpus() == 0:
        with pytest.raises(RuntimeError, match="no GPU"):
            VectorIndex(32, use_gpu=True)
    else:
        assert VectorIndex(32, use_gpu=True).on_gpu
