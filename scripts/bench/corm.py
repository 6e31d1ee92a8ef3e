"""CORM's cost over its backbone: added parameters and forward+backward time, per backbone.

For each backbone (PDAN, MS-TCT) the same-seeded model is built with and without CORM (paper-size defaults:
PDAN 512 x 5 blocks, MS-TCT stages 256/384/576/864, CORM class_dim 128) and one training step
(forward + masked BCE + backward) is timed on random features. Prints one JSON object per backbone with
the ratios CORM/baseline measured in this run.

    python scripts/bench/corm.py                       # B=2, T=256, C=65 (MultiTHUMOS), D=1024, CPU
    python scripts/bench/corm.py --device cuda --batch 32 --length 256 --repeats 20
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from mmreason.config import apply_overrides
from mmreason.methods.corm.config import CORMExperiment
from mmreason.methods.corm.model import CORM, MultiLabelTALModel, build_backbone, masked_bce_loss


def build(cfg: CORMExperiment, use_corm: bool, num_classes: int) -> MultiLabelTALModel:
    torch.manual_seed(0)
    backbone = build_backbone(cfg.model, cfg.data.feature_dim)
    corm = None
    if use_corm:
        gen = torch.Generator().manual_seed(1)
        embeddings = torch.randn(num_classes, 384, generator=gen)       # MiniLM-sized label embeddings
        statistics_ = torch.rand(num_classes, num_classes, generator=gen)
        corm = CORM(backbone.out_dim, num_classes, cfg.model, embeddings, statistics_)
    return MultiLabelTALModel(backbone, num_classes, corm, base_logits=cfg.model.base_logits)


def time_step(model: torch.nn.Module, batch: dict, repeats: int, warmup: int, device: torch.device) -> float:
    """Median milliseconds of one forward + loss + backward."""
    def step():
        model.zero_grad(set_to_none=True)
        logits = model(batch["features"], batch["mask"])
        masked_bce_loss(logits, batch["labels"], batch["mask"]).backward()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=256, help="snippets per video (T)")
    parser.add_argument("--classes", type=int, default=65, help="C (MultiTHUMOS 65, TSU 51)")
    parser.add_argument("--feature-dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbones", default="pdan,mstct")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. model.class_dim=64")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    for backbone in args.backbones.split(","):
        cfg = apply_overrides(CORMExperiment(), [f"model.backbone={backbone}", f"data.feature_dim={args.feature_dim}",
                                                 *args.overrides])
        gen = torch.Generator().manual_seed(0)
        mask = torch.ones(args.batch, args.length)
        mask[0, args.length * 3 // 4:] = 0                              # one padded video
        batch = {"features": torch.randn(args.batch, args.length, args.feature_dim, generator=gen),
                 "labels": (torch.rand(args.batch, args.length, args.classes, generator=gen) < 0.1).float(),
                 "mask": mask}
        batch = {k: v.to(device) for k, v in batch.items()}
        result = {"backbone": backbone, "device": str(device), "batch": args.batch, "length": args.length,
                  "classes": args.classes}
        for name, use_corm in (("baseline", False), ("corm", True)):
            model = build(cfg, use_corm, args.classes).to(device).train()
            result[f"{name}_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
            result[f"{name}_ms"] = round(time_step(model, batch, args.repeats, args.warmup, device), 2)
        result["param_ratio"] = round(result["corm_params"] / result["baseline_params"], 4)
        result["time_ratio"] = round(result["corm_ms"] / result["baseline_ms"], 4)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
