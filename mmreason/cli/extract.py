"""``mmreason extract``: visual features for your own videos, in the files the anticipation loaders read."""
from __future__ import annotations

EXAMPLES = """examples:
  # ICVL (Ego4D LTA): <output>/<clip_uid>.npy [A, 4, 768], one row per action_idx
  mmreason extract --encoder openclip:ViT-L-14-quickgelu:openai --dataset ego4d_lta \\
      --annotations ego4d/fho_lta_train.json ego4d/fho_lta_val.json ego4d/fho_lta_test_unannotated.json \\
      --videos ego4d/v2/clips --output features/ego4d_lta_clip_l14
  # VS-TransGRU (RULSTM protocol): an LMDB keyed '{video}_frame_{:010d}.jpg', from RULSTM frame dumps
  mmreason extract --encoder openclip:ViT-L-14-quickgelu:openai --dataset rulstm --store lmdb \\
      --annotations ek55/training.csv ek55/validation.csv --frames ek55/frames --output ek55/clip_l14

A killed run continues where it stopped (finished clips are never recomputed). Train on the output with the same
encoder spec (ICVL: data.features_dir=<output> data.encoder=<spec>), so the Anticipator encodes videos the same way.
"""


def _add_extract(sub) -> None:
    import argparse

    p = sub.add_parser("extract", help="extract visual features for your own videos (ICVL per action, RULSTM per frame)",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", required=True,
                   help="openclip:<arch>[:<pretrained tag or checkpoint file>] (e.g. openclip:ViT-L-14-quickgelu:openai;"
                        " no weights = random init, tests only) or pixels:<dim> (weight-free test encoder)")
    p.add_argument("--dataset", required=True, choices=("ego4d_lta", "egotopo_lta", "rulstm"),
                   help="ego4d_lta / egotopo_lta (EK-55, EGTEA): per-segment [A, T, D] .npy files (ICVL); rulstm: "
                        "per-frame features (VS-TransGRU)")
    p.add_argument("--annotations", nargs="+", required=True,
                   help="fho_lta_*.json files (ego4d_lta), EGO-TOPO split files (egotopo_lta) or RULSTM split CSVs "
                        "(rulstm) listing the clips and times")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", help="folder of <clip_uid or video><ext> video files")
    source.add_argument("--frames", help="folder of <video>/ frame dumps (named by --frame-template, from 1)")
    p.add_argument("--output", required=True, help="output folder (rulstm + lmdb: the LMDB folder itself)")
    p.add_argument("--store", default="npy", choices=("npy", "lmdb"), help="rulstm: npy (dense per video) or lmdb "
                                                                           "(only the frames the RULSTM sampler reads)")
    p.add_argument("--frames-per-segment", type=int, default=4,
                   help="per-segment layouts: frames encoded per segment, at the centres of equal parts (AntGPT: 4)")
    p.add_argument("--fps", type=float, default=30.0,
                   help="frame rate of frame numbers (RULSTM CSVs: 30; EGO-TOPO splits: EK-55 60, EGTEA 24) and of "
                        "frame folders")
    p.add_argument("--time-step", type=float, default=0.25, help="rulstm: seconds between features (RULSTM 0.25)")
    p.add_argument("--sequence-length", type=int, default=14, help="rulstm: features before each action (RULSTM 14)")
    p.add_argument("--video-ext", default=".mp4", help="extension of the video files")
    p.add_argument("--frame-template", default="frame_{:010d}.jpg", help="file names in a frame folder")
    p.add_argument("--batch-size", type=int, default=64, help="frames per encoder forward")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_extract)


def _run_extract(args) -> dict:
    from mmreason import api

    return api.extract_features(
        args.dataset, args.annotations, args.output, args.encoder, videos=args.videos, frames=args.frames,
        video_ext=args.video_ext, frame_template=args.frame_template, fps=args.fps,
        frames_per_segment=args.frames_per_segment, store=args.store, time_step=args.time_step,
        sequence_length=args.sequence_length, batch_size=args.batch_size, device=args.device,
        progress=not args.no_progress)


SUBCOMMANDS = (_add_extract,)
