"""Writing real video files in tests (PyAV). Import from any test: ``from video_files import write_video``."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(path: Path, frames: np.ndarray, codec: str = "mpeg4", *, gop: int | None = None,
                pts_ms: np.ndarray | None = None, options: dict[str, str] | None = None) -> Path:
    """Encode RGB ``frames [T, H, W, 3]`` uint8 into ``path`` at 25 fps (the container follows the suffix):
    ``gop`` = a keyframe every ``gop`` frames, ``pts_ms`` = variable frame times in ms, ``options`` = codec options
    (e.g. ``{"qscale": "2"}``)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        if options:
            stream.options = options
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = int(pts_ms[i]), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
