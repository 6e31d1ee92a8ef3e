"""Forward + backward time of one Space-time Cross Attention block (STDD) against a plain CLIP block.

Both run the same open_clip residual block (same weights) on ``[B*T, 1 + P, D]`` tokens; the STCA block adds a
half-token sparse attention per temporal scale (default scales 1 and 2) to the full-token path. Prints one JSON
object per line; the STCA line carries ``ratio`` = STCA time / plain time, measured in the same run.

    python scripts/bench/stca.py                       # ViT-B/16 block: width 768, 12 heads, 8 frames, 197 tokens
    python scripts/bench/stca.py --videos 4 --device cuda
    python scripts/bench/stca.py --width 384 --heads 6 --grid 8    # a smaller size for very busy machines
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def timed(fn, repeats: int, warmup: int, device: str) -> list[float]:
    out = []
    for i in range(warmup + repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            out.append(time.perf_counter() - start)
    return out


def main() -> None:
    from open_clip.transformer import ResidualAttentionBlock

    from mmreason.clip.towers import block_forward
    from mmreason.methods.stdd.stca import st_cross_attention_block, window_keep_indices

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--grid", type=int, default=14, help="patch grid side (14 -> 196 patches + CLS = 197 tokens)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--videos", type=int, default=1)
    ap.add_argument("--mask-rate", type=float, default=0.5)
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--channel-fold", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = args.device
    block = ResidualAttentionBlock(args.width, args.heads, act_layer=torch.nn.GELU).to(device)
    tokens = 1 + args.grid * args.grid
    x = torch.randn(args.videos * args.frames, tokens, args.width, device=device, requires_grad=True)
    keep = window_keep_indices(args.videos, args.frames, args.grid, args.mask_rate, device=device)

    def plain():
        block.zero_grad(set_to_none=True)
        block_forward(block, x).sum().backward()

    def stca():
        block.zero_grad(set_to_none=True)
        st_cross_attention_block(block, x, args.frames, keep, temporal_scales=args.scales,
                                 channel_fold=args.channel_fold).sum().backward()

    size = {"width": args.width, "heads": args.heads, "tokens": tokens, "frames": args.frames, "videos": args.videos,
            "kept_tokens_per_frame": 1 + keep.shape[-1], "scales": args.scales, "device": device,
            "threads": torch.get_num_threads()}
    base = statistics.median(timed(plain, args.repeats, args.warmup, device))
    print(json.dumps({"name": "plain_clip_block_fwd_bwd", "median_s": round(base, 5), **size}), flush=True)
    cost = statistics.median(timed(stca, args.repeats, args.warmup, device))
    print(json.dumps({"name": "stca_block_fwd_bwd", "median_s": round(cost, 5), "ratio": round(cost / base, 3),
                      "baseline": "plain_clip_block_fwd_bwd", **size}), flush=True)


if __name__ == "__main__":
    main()
