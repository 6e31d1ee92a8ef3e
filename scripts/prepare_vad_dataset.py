#!/usr/bin/env python
"""Convert a VAD release into mmreason's frame-folder layout (mmreason.data.vad_prepare).

    python scripts/prepare_vad_dataset.py --dataset shanghaitech --src /data/shanghaitech           # in place
    python scripts/prepare_vad_dataset.py --dataset nwpu_campus --src /data/NWPUCampusDataset --out /data/nwpu_campus
    python scripts/prepare_vad_dataset.py --dataset ubnormal --src /data/UBnormal --out /data/ubnormal \
        --split-dir /code/UBnormal/scripts

Then point ``data.root`` at ``--out``. Converted videos are skipped on a rerun (resumable). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys

from mmreason.data.vad_prepare import PREPARERS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, choices=sorted(PREPARERS))
    p.add_argument("--src", required=True, help="the release folder as downloaded")
    p.add_argument("--out", default=None, help="output root (ShanghaiTech: default = --src, in place)")
    p.add_argument("--split-dir", default=None, help="UBnormal: folder of the *_video_names.txt split lists "
                                                     "(default <src>/scripts)")
    p.add_argument("--max-side", type=int, default=0, help="shrink frames whose longer side exceeds this; 0 = keep")
    args = p.parse_args(argv)
    if args.out is None and args.dataset != "shanghaitech":
        p.error(f"--out is required for {args.dataset}")
    kwargs = {"max_side": args.max_side}
    if args.dataset == "ubnormal":
        kwargs["split_dir"] = args.split_dir
    try:
        summary = PREPARERS[args.dataset](args.src, args.out, **kwargs)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
