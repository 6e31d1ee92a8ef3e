"""Benchmark: mmreason.retrieval.VectorIndex (FAISS flat and HNSW) against exact numpy brute force.

For each bank size it builds the indexes, runs the same queries through each, and prints one JSON object per
result line: build time, search time, queries/s, recall@k against the exact numpy answer, and the queries/s
ratio against numpy measured in the same run.

Data: L2-normalised float32 vectors, inner-product (cosine) search, like sentence/CLIP embeddings. By default the
bank is ``clustered`` (a mixture of ``--clusters`` Gaussian blobs with noise), which has neighbour structure like
real embeddings; ``--data gaussian`` uses i.i.d. Gaussian vectors, the hardest case for graph indexes (every
point is nearly equidistant) and a much slower HNSW build. Queries are fresh draws from the same distribution.

    python scripts/bench/retrieval.py                        # 10k, 100k, 1M x 384 (about 3 min on 2 idle cores)
    python scripts/bench/retrieval.py --sizes 10000 --data gaussian --ef-search 16,64,256
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from mmreason.retrieval import VectorIndex  # noqa: E402


def make_vectors(n: int, dim: int, kind: str, centers: np.ndarray | None, rng: np.random.Generator,
                 noise: float, chunk: int = 100_000) -> np.ndarray:
    """[n, dim] float32 unit vectors, generated in chunks to bound temporaries."""
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = rng.standard_normal((m, dim), dtype=np.float32)
        if kind == "clustered":
            x = centers[rng.integers(0, len(centers), m)] + noise * x
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def numpy_exact(bank: np.ndarray, queries: np.ndarray, k: int, chunk: int = 50) -> np.ndarray:
    """Exact top-k ids by inner product, queries in chunks so the [chunk, N] score block stays bounded."""
    ids = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), chunk):
        sim = queries[s : s + chunk] @ bank.T  # [c, N]
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, 1), axis=1)
        ids[s : s + chunk] = np.take_along_axis(top, order, 1)
    return ids


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(e.tolist())) / len(e) for f, e in zip(found, exact)]))


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated bank sizes")
    ap.add_argument("--dim", type=int, default=384, help="vector dimension (384 = MiniLM)")
    ap.add_argument("--queries", type=int, default=200, help="number of queries")
    ap.add_argument("--k", type=int, default=10, help="neighbours per query (recall@k)")
    ap.add_argument("--data", choices=["clustered", "gaussian"], default="clustered")
    ap.add_argument("--clusters", type=int, default=1000, help="blobs for --data clustered")
    ap.add_argument("--noise", type=float, default=0.5, help="blob noise scale relative to unit-variance centres")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80, help="HNSW build beam (faiss default 40; 80 buys recall at 1M)")
    ap.add_argument("--ef-search", default="32,64,128,256", help="comma-separated HNSW search beams to time")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import faiss

    sizes = [int(s) for s in args.sizes.split(",")]
    ef_searches = [int(e) for e in args.ef_search.split(",")]
    rng = np.random.default_rng(args.seed)
    centers = rng.standard_normal((args.clusters, args.dim), dtype=np.float32) if args.data == "clustered" else None
    queries = make_vectors(args.queries, args.dim, args.data, centers, rng, args.noise)
    common = {"bench": "retrieval", "dim": args.dim, "queries": args.queries, "k": args.k, "data": args.data,
              "threads": faiss.omp_get_max_threads(), "cpus": os.cpu_count(), "machine": platform.machine()}

    for n in sizes:
        t0 = time.perf_counter()
        bank = make_vectors(n, args.dim, args.data, centers, rng, args.noise)
        gen_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        exact = numpy_exact(bank, queries, args.k)
        numpy_s = time.perf_counter() - t0
        numpy_qps = args.queries / numpy_s
        emit({**common, "n": n, "method": "numpy_bruteforce", "build_s": 0.0, "search_s": round(numpy_s, 4),
              "qps": round(numpy_qps, 1), f"recall@{args.k}": 1.0, "qps_ratio_vs_numpy": 1.0,
              "data_gen_s": round(gen_s, 2)})

        t0 = time.perf_counter()
        flat = VectorIndex(args.dim, kind="flat", metric="ip", use_gpu=False)
        flat.add(bank)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, ids = flat.search(queries, args.k)
        search_s = time.perf_counter() - t0
        emit({**common, "n": n, "method": "faiss_flat", "build_s": round(build_s, 3), "search_s": round(search_s, 4),
              "qps": round(args.queries / search_s, 1), f"recall@{args.k}": recall(ids, exact),
              "qps_ratio_vs_numpy": round(numpy_s / search_s, 3)})
        del flat

        t0 = time.perf_counter()
        hnsw = VectorIndex(args.dim, kind="hnsw", metric="ip", hnsw_m=args.hnsw_m,
                           ef_construction=args.ef_construction, use_gpu=False)
        hnsw.add(bank)
        build_s = time.perf_counter() - t0
        for ef in ef_searches:
            hnsw.ef_search = ef
            hnsw.search(queries[:10], args.k)  # warm-up
            t0 = time.perf_counter()
            _, ids = hnsw.search(queries, args.k)
            search_s = time.perf_counter() - t0
            emit({**common, "n": n, "method": "faiss_hnsw", "hnsw_m": args.hnsw_m,
                  "ef_construction": args.ef_construction, "ef_search": ef, "build_s": round(build_s, 2),
                  "search_s": round(search_s, 4), "qps": round(args.queries / search_s, 1),
                  f"recall@{args.k}": recall(ids, exact), "qps_ratio_vs_numpy": round(numpy_s / search_s, 2)})
        del hnsw, bank


if __name__ == "__main__":
    main()
