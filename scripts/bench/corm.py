"""CORM's cost over its backbone: training-step time, FLOPs and parameters, per backbone and CORM width.

For each backbone (PDAN, MS-TCT) the same-seeded model is built without CORM (the baseline: backbone + linear
per-frame classifier) and with CORM in each of ``--variants`` (paper-size backbones: PDAN 512 x 5 blocks,
MS-TCT stages 256/384/576/864; ``default`` = today's config, class_dim 32 and 1 class-token attention head;
``previous`` = the earlier default, class_dim 128 and 4 heads), and one training step
(forward + masked BCE + backward) is timed on random features, the models taking turns so that machine load
hits all of them alike. Prints one JSON object per (backbone, variant) with the ratios CORM / baseline of
median step time and of FLOPs (``torch.utils.flop_counter``: matmuls, convolutions, attention; deterministic),
all measured in this run (on a CPU also the ratio of process CPU time, steadier than the wall clock when other
jobs share the machine). ``--profile`` adds one JSON object per CORM part (class features, visual
co-occurrence, relation graph, classifier; forward + backward, milliseconds; CPU time on a CPU) and the
backbone's forward + backward, to show where the time goes.

    python scripts/bench/corm.py                       # B=2, T=256, C=65 (MultiTHUMOS), D=1024, CPU
    python scripts/bench/corm.py --device cuda --batch 32 --repeats 20 --profile
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


VARIANTS = {"default": [], "previous": ["model.class_dim=128", "model.visual_heads=4"]}


def build(cfg: CORMExperiment, use_corm: bool, num_classes: int) -> MultiLabelTALModel:
    torch.manual_seed(0)
    backbone = build_backbone(cfg.model, cfg.data.feature_dim)
    corm = None
    if use_corm:
        gen = torch.Generator().manual_seed(1)
        embeddings = torch.randn(num_classes, 384, generator=gen)       # MiniLM-sized label embeddings
        statistics_ = torch.rand(num_classes, num_classes, generator=gen)
        corm = CORM(backbone.out_dim, num_classes, cfg.model, embeddings, statistics_)
    # heatmap_weight 0: the comparison is about CORM, and both models would pay for MS-TCT's heat-map branch alike
    return MultiLabelTALModel(backbone, num_classes, corm, base_logits=cfg.model.base_logits)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(model: torch.nn.Module, batch: dict) -> None:
    model.zero_grad(set_to_none=True)
    logits = model(batch["features"], batch["mask"])
    masked_bce_loss(logits, batch["labels"], batch["mask"]).backward()


def time_once(fn, device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU milliseconds of one call of ``fn``. On a shared CPU the process time is the
    steadier measure of the work done (other jobs stretch the wall clock, not this process's CPU time)."""
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return 1000 * (time.perf_counter() - start), 1000 * (time.process_time() - cpu_start)


def time_step(model: torch.nn.Module, batch: dict, repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall-clock milliseconds of one forward + loss + backward."""
    for _ in range(warmup):
        train_step(model, batch)
    return statistics.median(time_once(lambda: train_step(model, batch), device)[0] for _ in range(repeats))


def step_flops(model: torch.nn.Module, batch: dict) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        train_step(model, batch)
    return counter.get_total_flops()


def profile_corm(model: MultiLabelTALModel, batch: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Forward + backward milliseconds of each CORM part on the backbone's (detached) valid-frame features."""
    import torch.nn.functional as F

    corm = model.corm
    with torch.no_grad():
        h = model.backbone(batch["features"], batch["mask"])[0]
    frames = h.reshape(-1, h.shape[-1])[batch["mask"].reshape(-1) > 0].requires_grad_(True)   # [N, d]
    z0 = corm.class_specific(frames).detach().requires_grad_(True)                             # [N, C, k]
    graph = corm.relation_graph().detach()

    def part(fn):
        def run():
            out = fn()
            out.backward(torch.ones_like(out))
        run()
        return round(statistics.median(time_once(run, device)[device.type == "cpu"] for _ in range(repeats)), 2)

    parts = {"class_features": part(lambda: corm.class_specific(frames))}
    if len(corm.visual):
        parts["visual_cooccurrence"] = part(lambda: corm.visual[0](z0))
    if len(corm.graph_layers):
        parts["relation_graph"] = part(lambda: z0 + F.gelu(corm.graph_layers[0](torch.matmul(graph, z0))))
    parts["classifier"] = part(lambda: (z0 * corm.classifier_weight).sum(-1) + corm.classifier_bias)
    parts["backbone_step"] = part(lambda: model.backbone(batch["features"], batch["mask"])[0])
    return parts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=256, help="snippets per video (T)")
    parser.add_argument("--classes", type=int, default=65, help="C (MultiTHUMOS 65, TSU 51, Charades 157)")
    parser.add_argument("--feature-dim", type=int, default=1024)
    parser.add_argument("--variants", default="default,previous", help=f"CORM settings to compare: {list(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbones", default="pdan,mstct")
    parser.add_argument("--profile", action="store_true", help="also time each CORM part")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. model.visual_layers=0")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dims = args.variants.split(",")
    unknown = [d for d in dims if d not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    for backbone in args.backbones.split(","):
        gen = torch.Generator().manual_seed(0)
        mask = torch.ones(args.batch, args.length)
        mask[0, args.length * 3 // 4:] = 0                              # one padded video
        batch = {"features": torch.randn(args.batch, args.length, args.feature_dim, generator=gen),
                 "labels": (torch.rand(args.batch, args.length, args.classes, generator=gen) < 0.1).float(),
                 "mask": mask}
        batch = {k: v.to(device) for k, v in batch.items()}
        models = {}
        for dim in [None, *dims]:                                    # None: the baseline
            cfg = apply_overrides(CORMExperiment(), [f"model.backbone={backbone}",
                                                     f"data.feature_dim={args.feature_dim}",
                                                     *(VARIANTS[dim] if dim else []), *args.overrides])
            models[dim] = build(cfg, dim is not None, args.classes).to(device).train()
        for model in models.values():
            for _ in range(args.warmup):
                train_step(model, batch)
        times = {dim: [] for dim in models}
        for _ in range(args.repeats):                                   # interleaved: load hits every model alike
            for dim, model in models.items():
                times[dim].append(time_once(lambda: train_step(model, batch), device))

        def median(dim, which):
            return statistics.median(t[which] for t in times[dim])

        base_flops = step_flops(models[None], batch)
        base_params = sum(p.numel() for p in models[None].parameters() if p.requires_grad)
        for dim in dims:
            flops = step_flops(models[dim], batch)
            params = sum(p.numel() for p in models[dim].parameters() if p.requires_grad)
            result = {"backbone": backbone, "variant": dim, "class_dim": models[dim].corm.class_dim,
                      "device": str(device), "batch": args.batch,
                      "length": args.length, "classes": args.classes, "baseline_ms": round(median(None, 0), 2),
                      "corm_ms": round(median(dim, 0), 2), "time_ratio": round(median(dim, 0) / median(None, 0), 4)}
            if device.type == "cpu":
                result["cpu_time_ratio"] = round(median(dim, 1) / median(None, 1), 4)
            result.update({"baseline_gflop": round(base_flops / 1e9, 2), "corm_gflop": round(flops / 1e9, 2),
                           "flop_ratio": round(flops / base_flops, 4), "param_ratio": round(params / base_params, 4)})
            print(json.dumps(result), flush=True)
            if args.profile:
                print(json.dumps({"backbone": backbone, "variant": dim, "profile_ms": profile_corm(
                    models[dim], batch, args.repeats, device)}), flush=True)


if __name__ == "__main__":
    main()
