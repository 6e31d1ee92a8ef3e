"""Few-shot action recognition: cost of one training step of Task-Adapter and Task-Adapter++ vs full fine-tuning.

All three train on one N-way K-shot episode (Q queries per class, T frames) with the same frozen-or-not CLIP
backbone (random init, open_clip config ``--clip``) and SGD, as the released code does:

* ``full_finetune`` (baseline): every vision-tower weight trains; plain CLIP blocks, prototype matching.
* ``task_adapter``: frozen backbone, Task-Adapters in the last ``--adapter-layers`` blocks.
* ``task_adapter_pp``: Task-Adapter + order-adapted text tower (last ``--text-adapter-layers`` blocks) +
  fine-grained alignment.

Each variant runs in its own process: one warm-up step, then the median of ``--repeats`` timed steps. Peak
memory is that of the first training step (gradients and optimizer state are allocated there): on CUDA
``max_memory_allocated`` over the memory allocated before the step, on CPU the peak resident set (sampled every
2 ms by a thread) over the resident set before the step.
Prints one JSON object per variant with ratios against full fine-tuning measured in the same run.

Default size (2 CPU cores, a few minutes): ViT-B/16 width and depth at 112x112 input (7x7 patches), 5-way
1-shot, 1 query, 8 frames. ``--image-size 224`` gives the paper's input size.

    python scripts/bench/fsar.py                       # ViT-B/16 @112, 5-way 1-shot, 8 frames
    python scripts/bench/fsar.py --image-size 224      # the paper's size (slow on CPU)
    python scripts/bench/fsar.py --clip mmr-tiny-64 --image-size 64   # smoke run
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _experiment(variant: str, args):
    from mmreason.config import apply_overrides
    from mmreason.methods.task_adapter import METHOD as TA
    from mmreason.methods.task_adapter_pp import METHOD as TAPP

    spec = TAPP if variant == "task_adapter_pp" else TA
    adapter_layers = 0 if variant == "full_finetune" else args.adapter_layers
    overrides = [f"model.clip_model={args.clip}", f"model.num_frames={args.frames}", f"data.num_frames={args.frames}",
                 f"data.image_size={args.image_size}", f"data.resize_size={args.image_size}",
                 f"model.image_size={args.image_size}",
                 f"data.n_way={args.way}", f"data.k_shot={args.shot}", f"data.n_query={args.query}",
                 f"model.adapter_layers={adapter_layers}", "data.synthetic_directions=24",
                 "data.synthetic_vary=direction", "data.synthetic_videos_per_class=4"]
    if variant == "task_adapter_pp":
        overrides.append(f"model.text_adapter_layers={args.text_adapter_layers}")
    return spec, apply_overrides(spec.config_cls(), overrides)


def _run_variant(variant: str, args, queue) -> None:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    spec, cfg = _experiment(variant, args)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    model = spec.build_model(cfg)
    if variant == "full_finetune":  # the same backbone, every vision weight trainable
        for p in model.visual.parameters():
            p.requires_grad_(True)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.SGD(params, lr=1e-3)
    episode = spec.build_dataset(cfg, "train")[0]
    episode = {k: v.to(device) if torch.is_tensor(v) else v for k, v in episode.items()}

    def step():
        optimizer.zero_grad(set_to_none=True)
        model.loss(episode)["loss"].backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    # Memory of the first step (it allocates the gradients and the optimizer state too): on CPU the peak of
    # the resident set, sampled every 2 ms by a thread, over the resident set before the step.
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated() / 2**20
    rss_before, rss_peak, done = _rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            rss_peak[0] = max(rss_peak[0], _rss_mb())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    step()  # also the warm-up for the timing
    done.set()
    sampler.join()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20 - base_mem
    else:
        peak = max(0.0, rss_peak[0] - rss_before)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    queue.put({"variant": variant, "step_s": statistics.median(times), "peak_mem_mb": peak,
               "trainable_params": trainable, "total_params": total, "device": str(device)})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", default="ViT-B-16-quickgelu", help="open_clip model config")
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--way", type=int, default=5)
    ap.add_argument("--shot", type=int, default=1)
    ap.add_argument("--query", type=int, default=1)
    ap.add_argument("--adapter-layers", type=int, default=2, help="M (6 for SSv2)")
    ap.add_argument("--text-adapter-layers", type=int, default=8, help="L (2 for SSv2)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu", action="store_true", help="stay on CPU even when CUDA is available")
    ap.add_argument("--variants", default="full_finetune,task_adapter,task_adapter_pp")
    args = ap.parse_args(argv)

    ctx = mp.get_context("spawn")
    results = {}
    for variant in args.variants.split(","):
        queue = ctx.Queue()
        proc = ctx.Process(target=_run_variant, args=(variant, args, queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"variant {variant} failed (exit code {proc.exitcode}); see the traceback above")
        results[variant] = queue.get()
    base = results.get("full_finetune")
    size = {"clip": args.clip, "image_size": args.image_size, "frames": args.frames,
            "episode": f"{args.way}-way {args.shot}-shot {args.query}-query"}
    for variant, r in results.items():
        out = {"name": f"fsar_train_step/{variant}", **size, **r,
               "trainable_share": r["trainable_params"] / r["total_params"]}
        if base is not None:
            out["time_ratio_vs_full_finetune"] = r["step_s"] / base["step_s"]
            out["mem_ratio_vs_full_finetune"] = r["peak_mem_mb"] / base["peak_mem_mb"] if base["peak_mem_mb"] else None
            out["trainable_ratio_vs_full_finetune"] = r["trainable_params"] / base["trainable_params"]
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
