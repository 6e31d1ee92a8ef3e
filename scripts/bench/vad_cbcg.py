"""CBCG training-epoch time against the cross-batch memory size (mmreason.methods.cbcg).

Prints one JSON object per setting: the top-k MIL baseline (``use_clustering=false``) first, then CBCG with memory
sizes 0 (batch clustering only), ..., then CBCG (memory 1024) clustering the backbone features instead of the
snippet features and CBCG with RTFM's temporal backbone (``backbone=mtn``). Each line has ``epoch_s`` (median over
``--repeats`` epochs, after one warm-up epoch) and ``ratio_vs_memory0`` / ``ratio_vs_baseline``, measured in the
same run.

    python scripts/bench/vad_cbcg.py                       # synthetic 2048-d bags, a few minutes on 2 cores
    python scripts/bench/vad_cbcg.py --videos 800 --memory 0 1024 4096 16384 65536 --threads 16
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.data import DataLoader

from mmreason.config import apply_overrides
from mmreason.methods.cbcg import METHOD, CbcgExperiment


def epoch_seconds(cfg, dataset, batch_size: int, repeats: int) -> float:
    torch.manual_seed(0)
    model = METHOD.build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for epoch in range(repeats + 1):
        start = time.perf_counter()
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(epoch)):
            loss = model.loss(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch:  # the first epoch warms up (and fills the memory)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=128, help="training videos per class (normal = abnormal)")
    ap.add_argument("--dim", type=int, default=2048, help="feature width (UCF-Crime I3D: 2048)")
    ap.add_argument("--batch-size", type=int, default=32, help="pairs per batch (32 normal + 32 abnormal bags)")
    ap.add_argument("--memory", type=int, nargs="+", default=[0, 1024, 4096, 16384], help="memory sizes")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per setting")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = apply_overrides(CbcgExperiment(), {"model": {"feature_dim": args.dim, "cluster_warmup_steps": 0},
                                              "data": {"synthetic_train": [args.videos, args.videos],
                                                       "synthetic_snippets": [64, 64]}})
    dataset = METHOD.build_dataset(base, "train")
    for item in dataset:  # resample and cache every bag before timing
        pass
    baseline = epoch_seconds(apply_overrides(base, ["model.use_clustering=false"]), dataset, args.batch_size,
                             args.repeats)
    common = {"videos": 2 * args.videos, "dim": args.dim, "batch_size": args.batch_size,
              "threads": torch.get_num_threads()}
    print(json.dumps({"setting": "topk_mil_baseline", "memory_size": None, "epoch_s": round(baseline, 4),
                      "ratio_vs_baseline": 1.0, **common}), flush=True)
    memory0 = None
    for size in args.memory:
        t = epoch_seconds(apply_overrides(base, [f"model.memory_size={size}"]), dataset, args.batch_size,
                          args.repeats)
        memory0 = t if memory0 is None else memory0
        print(json.dumps({"setting": "cbcg", "memory_size": size, "epoch_s": round(t, 4),
                          "ratio_vs_memory0": round(t / memory0, 3), "ratio_vs_baseline": round(t / baseline, 3),
                          **common}), flush=True)
    for setting, override in (("cbcg_cluster_on_backbone", "model.cluster_on=backbone"),
                              ("cbcg_backbone_mtn", "model.backbone=mtn")):
        t = epoch_seconds(apply_overrides(base, ["model.memory_size=1024", override]), dataset, args.batch_size,
                          args.repeats)
        print(json.dumps({"setting": setting, "memory_size": 1024, "epoch_s": round(t, 4),
                          "ratio_vs_baseline": round(t / baseline, 3), **common}), flush=True)


if __name__ == "__main__":
    main()
