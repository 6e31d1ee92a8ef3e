#!/usr/bin/env python
"""Fill an object-track/crop cache from a detections file (the tracker runs outside mmreason).

    python scripts/fill_track_cache.py --detections dets.csv --root data/shanghaitech --layout shanghaitech \
        --split test --out cache/shanghaitech_test --crop-size 160

Detections: CSV with header ``video,frame,x1,y1,x2,y2[,score][,track_id]`` or a JSON list of
``{"video", "frame", "box": [x1, y1, x2, y2], "score", "track_id"}`` (e.g. exported from ByteTrack/MMTracking).
The tracker's ``track_id`` is kept when given; without it the boxes are linked by a simple IoU tracker
(``--iou``, ``--max-gap``). Frames are read from the frame-folder layout (mmreason.data.vad).
Already cached videos are skipped, so the job can be resumed; prints one JSON summary line.
"""
from __future__ import annotations

import argparse
import json
import sys

from mmreason.data.vad import LAYOUTS, TrackCache, fill_track_cache, list_frame_folder_videos, read_detections


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--detections", required=True, help="CSV or JSON detections file")
    p.add_argument("--root", required=True, help="dataset root (frame-folder layout)")
    p.add_argument("--layout", required=True, choices=sorted(LAYOUTS))
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--out", required=True, help="track cache folder")
    p.add_argument("--crop-size", type=int, default=160, help="crop side in pixels (ADSM: 160)")
    p.add_argument("--iou", type=float, default=0.3, help="IoU needed to extend a track (without track_id)")
    p.add_argument("--max-gap", type=int, default=1, help="frames a track may miss and still be extended "
                                                           "(without track_id)")
    p.add_argument("--min-score", type=float, default=0.0, help="drop detections below this confidence")
    p.add_argument("--context", type=float, default=1.0, help="crop side = context x the box's longer side")
    p.add_argument("--overwrite", action="store_true", help="re-track videos already in the cache")
    args = p.parse_args(argv)
    try:
        videos = list_frame_folder_videos(args.root, args.layout, args.split)
        detections = read_detections(args.detections)
        unknown = sorted(set(detections) - {v.name for v in videos})
        if unknown:
            raise ValueError(f"{args.detections}: detections for videos not in {args.root} ({args.split}): {unknown[:5]}")
        written = fill_track_cache(TrackCache(args.out), videos, detections, args.crop_size, args.iou,
                                   args.max_gap, args.min_score, args.context, args.overwrite)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"videos_written": len(written), "tracks": sum(written.values()), "out": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
