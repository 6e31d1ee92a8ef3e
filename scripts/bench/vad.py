#!/usr/bin/env python
"""ADSM scoring throughput against the number of noise levels L (Algorithm 1 runs the NCST once per level), and
frames/s of the whole ADSM evaluation pipeline.

Prints one JSON object per L (``"bench": "adsm_scoring"``): clips/s and frames/s of the network alone (one clip
per frame and object at clip stride 1, so the two are equal; the paper reports ~51.5 frames/s for its 130M model
with L = 20 on an RTX 4090), and the ratio of throughput against L = 1 measured in the same run (ideal: 1/L).

Then (``"bench": "adsm_pipeline"``, tiny preset) frames/s of scoring the test videos of
``configs/tiny_synthetic.yaml`` end to end -- clips from the dataset, Algorithm 1 at the config's L, Eqs. 15-16 to
frame scores -- and its clips/s as a ratio of the network-alone clips/s at the same L and batch size measured in
the same run (1.0 = no data or aggregation overhead).

    python scripts/bench/vad.py                              # tiny NCST on CPU, a minute or two on 2 cores
    python scripts/bench/vad.py --preset small --levels 1 5 20
    python scripts/bench/vad.py --preset paper --device cuda --batch-size 20   # 160px, 8 frames, 130M parameters
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from mmreason.methods.adsm.config import AdsmConfig
from mmreason.methods.adsm.model import AdsmModel

PRESETS = {
    "tiny": dict(image_size=32, patch_size=8, num_frames=4, hidden_dim=64, depth=2, num_heads=4, cond_dim=64),
    "small": dict(image_size=64, patch_size=8, num_frames=8, hidden_dim=192, depth=4, num_heads=4, cond_dim=192),
    "paper": {},  # the AdsmConfig defaults: 160px crops, patch 16, 8 frames, DiT-B width, 130.7M parameters
}


def throughput(model: AdsmModel, clips: torch.Tensor, scene: torch.Tensor, repeats: int) -> float:
    """Clips per second of ``anomaly_scores`` (best of ``repeats`` after one warm-up)."""
    sync = torch.cuda.synchronize if clips.is_cuda else (lambda: None)
    gen = torch.Generator(device=clips.device).manual_seed(0)
    model.anomaly_scores(clips, scene, generator=gen)
    best = float("inf")
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        model.anomaly_scores(clips, scene, generator=gen)
        sync()
        best = min(best, time.perf_counter() - t)
    return clips.shape[0] / best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2, 5, 10, 20], help="values of L (1 is the baseline)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    levels = sorted(set(args.levels) | {1})
    torch.manual_seed(0)
    base = AdsmConfig(**PRESETS[args.preset], num_scenes=13)
    model = AdsmModel(base).to(args.device).eval()
    for prm in model.parameters():  # non-zero heads so every level does real work
        torch.nn.init.normal_(prm, std=0.02)
    clips = torch.rand(args.batch_size, base.num_frames, 3, base.image_size, base.image_size, device=args.device)
    scene = torch.randint(0, 13, (args.batch_size,), device=args.device)
    n_params = sum(q.numel() for q in model.parameters())
    baseline = None
    for num_levels in levels:
        model.cfg.num_levels = num_levels  # the NCST does not depend on L; only Algorithm 1's loop does
        # bfloat16: autocast the NCST's matrix products (weights and the Tweedie/PSNR arithmetic stay float32)
        with torch.autocast(device_type=torch.device(args.device).type, dtype=torch.bfloat16,
                            enabled=args.dtype == "bfloat16"):
            rate = throughput(model, clips, scene, args.repeats)
        baseline = baseline or rate
        print(json.dumps({"bench": "adsm_scoring", "preset": args.preset, "device": args.device, "dtype": args.dtype,
                          "params_m": round(n_params / 1e6, 2), "batch_size": args.batch_size, "levels": num_levels,
                          "clips_per_s": round(rate, 2), "frames_per_s": round(rate, 2),
                          "ms_per_clip_per_level": round(1000 / rate / num_levels, 3),
                          "ratio_vs_L1": round(rate / baseline, 4), "ideal_ratio": round(1 / num_levels, 4)}), flush=True)
    if args.preset == "tiny" and args.device == "cpu" and args.dtype == "float32":
        pipeline(args.repeats)
    return 0


def pipeline(repeats: int) -> None:
    """Frames/s of ADSM's evaluation on the tiny synthetic config, against the network alone in the same run."""
    from pathlib import Path

    from mmreason.config import apply_overrides, read_yaml
    from mmreason.methods.adsm import METHOD, AdsmExperiment
    from mmreason.methods.adsm.evaluation import score_dataset, video_frame_scores

    tiny = Path(__file__).resolve().parents[2] / "mmreason/methods/adsm/configs/tiny_synthetic.yaml"
    cfg = apply_overrides(AdsmExperiment(), read_yaml(tiny))
    torch.manual_seed(0)
    model = METHOD.build_model(cfg).eval()
    for prm in model.parameters():
        torch.nn.init.normal_(prm, std=0.02)
    test = METHOD.build_dataset(cfg, "test")
    frames = sum(v.num_frames for v in test.videos)
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass warms up
        t = time.perf_counter()
        video_frame_scores(score_dataset(model, test, cfg), test, cfg.eval)
        best = min(best, time.perf_counter() - t)
    m = cfg.model
    clips = torch.rand(cfg.eval.batch_size, m.num_frames, 3, m.image_size, m.image_size)
    network = throughput(model, clips, torch.randint(0, m.num_scenes, (cfg.eval.batch_size,)), repeats)
    print(json.dumps({"bench": "adsm_pipeline", "config": "adsm/tiny_synthetic", "device": "cpu",
                      "levels": m.num_levels, "videos": len(test.videos), "frames": frames, "clips": len(test),
                      "frames_per_s": round(frames / best, 2), "clips_per_s": round(len(test) / best, 2),
                      "network_clips_per_s": round(network, 2),
                      "ratio_vs_network": round(len(test) / best / network, 4)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
