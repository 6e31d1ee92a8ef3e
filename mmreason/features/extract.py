"""Feature extraction for your own videos: exactly the files the anticipation loaders read.

Layouts (``dataset``):

``ego4d_lta`` - per action, for ICVL (``data.features_dir``, read by ``mmreason.methods.icvl.data.read_segment_features``):
    ``<output>/<clip_uid>.npy``, float32 ``[A, T, D]``: row ``action_idx`` holds the features of ``T =
    frames_per_segment`` frames of that action, taken at the centres of T equal parts of
    ``[action_clip_start_sec, action_clip_end_sec]`` (AntGPT encodes 4 CLIP images per segment; where in the segment
    is not stated, the centres are this implementation's choice). ``A = max(action_idx) + 1``; an action_idx that no
    annotation file lists keeps a zero row. Clips and times come from the ``fho_lta_*.json`` files given.

``egotopo_lta`` - the same per-segment layout for ICVL on EK-55 / EGTEA Gaze+: ``<output>/<video_id>.npy``, row =
    the segment's position in (start, end) order of the EGO-TOPO split files given (``read_egotopo_split``), times =
    frame numbers / ``fps`` (EK-55 60, EGTEA 24).

``rulstm`` - per frame, RULSTM-style, for VS-TransGRU (``data.root/<modality>``, read by
    ``mmreason.data.anticipation.open_features``): frame numbers are RULSTM's (1-based, at ``fps``, frame ``f`` shown
    at ``(f - 1) / fps`` seconds).
    ``store="lmdb"``: one LMDB (the folder ``output``), key ``"{video}_frame_{f:010d}.jpg"`` -> raw float32 bytes, for
    exactly the frames RULSTM's sampler reads (``time_step`` x ``sequence_length`` before each row's start frame) in
    the split CSVs given.
    ``store="npy"``: ``<output>/<video>.npy`` float32 ``[F, D]`` with row ``f - 1`` = frame ``f``, for every frame
    of the video at ``fps`` (dense, as the npy store indexes rows by frame number).

Input: video files (``videos/<name>.mp4``, decoded with PyAV at exact timestamps through :mod:`mmreason.video`) or
frame folders (``frames/<name>/`` + ``frame_template``, numbered from 1 at ``fps``).

Resumable: each clip / video is written atomically when complete (a ``.npy`` file via a temporary file and a rename;
one LMDB transaction per video), so a killed run continues where it stopped and never recomputes finished clips.
``<output>/extract.json`` records the encoder spec and the layout; a rerun with another encoder or layout into the
same folder is an error listing what differs. Every input is checked (files exist, decodable, enough frames, times
inside the video) before any frame is encoded, with one error naming the inputs that fail.
"""
from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mmreason.features.encoders import FrameEncoder, load_encoder

__all__ = ["DATASETS", "ExtractionInputError", "check_features_encoder", "extract_features", "read_manifest"]

DATASETS = ("ego4d_lta", "egotopo_lta", "rulstm")
PER_SEGMENT = ("ego4d_lta", "egotopo_lta")
MANIFEST = "extract.json"
log = logging.getLogger(__name__)
FORMAT_VERSION = 1
TIME_TOLERANCE_S = 0.5     # an annotation may end this far past the last frame (rounding); beyond it is an error


class ExtractionInputError(ValueError):
    """Inputs of an extraction are unusable; the message names each one."""


@dataclass
class _Job:
    """One output unit: a clip / video, its source and what to encode."""

    name: str
    source: Path
    times: np.ndarray | None = None          # per segment: [A, T] seconds (NaN rows = no annotation)
    frames: np.ndarray | None = None         # rulstm: sorted unique 1-based frame numbers to encode
    num_source_frames: int = 0
    duration: float = 0.0
    todo: np.ndarray | None = None           # rulstm: the frame numbers this run encodes (npy: all; lmdb: missing)


# ============================================================================================== manifest

def read_manifest(folder: str | Path) -> dict | None:
    """The ``extract.json`` of a feature folder (``None`` when the folder was not written by ``extract``)."""
    from mmreason.utils.io import read_json

    path = Path(folder) / MANIFEST
    return read_json(path) if path.is_file() else None


def check_features_encoder(folder: str | Path, spec: str, what: str = "the config") -> dict | None:
    """Fail when the features in ``folder`` were extracted with another encoder than ``spec`` (``what`` names where
    ``spec`` came from). Folders without a manifest pass (their encoder is unknown); returns the manifest."""
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("encoder") != spec:
        raise ExtractionInputError(f"{folder}: features were extracted with encoder {manifest.get('encoder')!r}, "
                                   f"but {what} says {spec!r}; video queries would be encoded differently from the "
                                   "training features. Use the same encoder spec for both")
    return manifest


def _claim_output(output: Path, settings: dict) -> None:
    """Write the manifest, or check that an existing one describes the same extraction."""
    from mmreason.utils.io import atomic_write_json

    old = read_manifest(output)
    if old is not None:
        changed = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if changed:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise ExtractionInputError(f"{output} already holds features of another extraction ({listed}); "
                                       "choose another --output folder (or delete that one)")
        return
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output / MANIFEST, settings)


# ============================================================================================== inputs

def _source(name: str, root: Path, from_folder: bool, video_ext: str) -> Path:
    return root / name if from_folder else root / f"{name}{video_ext}"


def _probe(job: _Job, from_folder: bool, frame_template: str, fps: float) -> str | None:
    """Fill the job's frame count and duration; a problem comes back as one line naming the input."""
    from mmreason.video import VideoDecodeError, count_folder_frames, probe

    if not job.source.exists():
        return f"{job.source}: {'frame folder' if from_folder else 'video file'} of {job.name!r} not found"
    try:
        if from_folder:
            job.num_source_frames = count_folder_frames(job.source, frame_template, start_index=1)
            job.duration = job.num_source_frames / fps
        else:
            info = probe(job.source)
            job.num_source_frames, job.duration = info.num_frames, info.duration
    except VideoDecodeError as e:
        return str(e)
    if job.num_source_frames == 0:
        return f"{job.source}: no frames"
    return None


def _segment_times(dataset: str, annotations: Sequence[Path], frames_per_segment: int, fps: float
                   ) -> dict[str, np.ndarray]:
    """``{clip or video: times [A, T]}`` of the per-segment layouts (NaN rows: an index no file annotates)."""
    from mmreason.data.anticipation import read_egotopo_split, read_ego4d_lta

    clips: dict[str, dict[int, tuple[float, float]]] = {}
    for path in annotations:
        if dataset == "ego4d_lta":
            spans = {uid: [(a.action_idx, a.start_sec, a.end_sec) for a in actions]
                     for uid, actions in read_ego4d_lta(path).items()}
        else:   # EGO-TOPO: row = the segment's position in (start, end) order, frames at fps
            spans = {vid: [(g.action_idx, g.start_frame / fps, g.end_frame / fps) for g in segments]
                     for vid, segments in read_egotopo_split(path).items()}
        for uid, rows in spans.items():
            seen = clips.setdefault(uid, {})
            for idx, start, end in rows:
                if seen.setdefault(idx, (start, end)) != (start, end):
                    raise ExtractionInputError(f"{path}: {uid} segment {idx} has the times {(start, end)}, another "
                                               f"annotation file says {seen[idx]}")
    centres = (np.arange(frames_per_segment) + 0.5) / frames_per_segment          # [T] in (0, 1)
    out = {}
    for uid, spans in clips.items():
        times = np.full((max(spans) + 1, frames_per_segment), np.nan)
        for idx, (start, end) in spans.items():
            times[idx] = start + centres * max(end - start, 0.0)
        out[uid] = times
    return out


def _rulstm_frames(annotations: Sequence[Path], fps: float, time_step: float, sequence_length: int
                   ) -> dict[str, np.ndarray]:
    """``{video: sorted frame numbers}`` that RULSTM's sampler reads for the rows of the split CSVs."""
    from mmreason.data.anticipation import read_rulstm_csv, rulstm_past_frames

    needed: dict[str, set[int]] = {}
    for path in annotations:
        for row in read_rulstm_csv(path):
            grid = rulstm_past_frames(row.start_frame, fps=fps, time_step=time_step, sequence_length=sequence_length)
            if grid.min() >= 1:   # rows without enough past frames are set aside by the loader: nothing to read
                needed.setdefault(row.video, set()).update(int(f) for f in grid)
    return {v: np.array(sorted(f), dtype=np.int64) for v, f in needed.items()}


def _check(jobs: list[_Job], dataset: str, from_folder: bool, frame_template: str, fps: float) -> None:
    problems = []
    for job in jobs:
        problem = _probe(job, from_folder, frame_template, fps)
        if problem is None and dataset in PER_SEGMENT:
            segments = int(np.isfinite(job.times[:, 0]).sum())
            late = np.nanmax(job.times) if segments else 0.0
            if job.num_source_frames < segments:
                problem = (f"{job.source}: {job.num_source_frames} frames, fewer than the {segments} annotated "
                           f"segments of clip {job.name!r} (a wrong or truncated video?)")
            elif late > job.duration + TIME_TOLERANCE_S:
                row = int(np.nanargmax(job.times.max(axis=1)))
                problem = (f"{job.source}: clip {job.name!r} action_idx {row} needs a frame at {late:.2f} s, the "
                           f"video lasts {job.duration:.2f} s")
        elif problem is None and job.frames is not None and len(job.frames):
            last = int(job.frames[-1])
            available = job.num_source_frames if from_folder else int(np.floor(job.duration * fps + 1e-6))
            if last > available + (0 if from_folder else int(np.ceil(TIME_TOLERANCE_S * fps))):
                problem = (f"{job.source}: video {job.name!r} needs frame {last} at {fps:g} fps, it has "
                           f"{available}")
        if problem:
            problems.append(problem)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ExtractionInputError(f"{len(problems)} of {len(jobs)} inputs cannot be extracted{more}:\n  "
                                   + "\n  ".join(problems[:5]))


# ============================================================================================== decoding

def _read(job: _Job, from_folder: bool, frame_template: str, fps: float, times: np.ndarray | None = None,
          numbers: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``[t, H, W, 3]`` at ``times`` (seconds) or RULSTM frame ``numbers`` (1-based at ``fps``)."""
    from mmreason.video import read_frame_folder, read_frames_at

    if numbers is not None:
        times = (numbers - 1) / fps
    times = np.minimum(times, max(job.duration - 1e-6, 0.0))   # within the tolerance past the end: the last frame
    if not from_folder:
        return read_frames_at(job.source, times)
    index = np.clip(np.floor(times * fps + 1e-6).astype(np.int64), 0, job.num_source_frames - 1)   # 0-based
    return read_frame_folder(job.source, index, frame_template, start_index=1)


def _encode_chunks(job, chunks, read, encoder: FrameEncoder, bar) -> np.ndarray:
    """Encode the chunks of one job, decoding chunk i + 1 in a thread while chunk i is encoded. ``[n, D]``."""
    out = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            frames = pending.result()
            pending = pool.submit(read, chunks[i + 1]) if i + 1 < len(chunks) else None
            feats = np.asarray(encoder(frames), dtype=np.float32)
            if feats.shape != (len(frames), encoder.dim):
                raise ValueError(f"encoder {encoder.spec!r} returned {feats.shape} for {len(frames)} frames of "
                                 f"{job.source}, expected [{len(frames)}, {encoder.dim}]")
            out.append(feats)
            bar.update(len(frames))
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


# ============================================================================================== writing

def _write_npy(path: Path, array: np.ndarray) -> None:
    from mmreason.utils.io import atomic_write_with

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write_with(path, write)


def _open_lmdb(output: Path):
    import os

    import lmdb

    from mmreason.data.anticipation import rulstm

    output.mkdir(parents=True, exist_ok=True)
    # LMDB opens a folder once per process: a read-only environment of the RULSTM reader here is closed first
    # (the reader reopens it on its next read)
    reader = getattr(rulstm, "_LMDB_ENVS", {}).pop((str(output.resolve()), os.getpid()), None)
    if reader is not None:
        reader.close()
    return lmdb.open(str(output), map_size=1 << 40, subdir=True)   # a sparse file: grows as written


# ============================================================================================== the job

def extract_features(dataset: str, annotations: Sequence[str | Path], output: str | Path,
                     encoder: str | FrameEncoder, *, videos: str | Path | None = None,
                     frames: str | Path | None = None, video_ext: str = ".mp4",
                     frame_template: str = "frame_{:010d}.jpg", fps: float = 30.0, frames_per_segment: int = 4,
                     store: str = "npy", time_step: float = 0.25, sequence_length: int = 14, batch_size: int = 64,
                     device: str | None = None, progress: bool = True) -> dict:
    """Extract features for ``dataset`` (``ego4d_lta``, ``egotopo_lta`` or ``rulstm``) into ``output``; see the
    module docstring.

    ``annotations``: the ``fho_lta_*.json`` files (ego4d_lta), EGO-TOPO split files (egotopo_lta, frame numbers at
    ``fps``) or RULSTM split CSVs (rulstm) whose clips/videos to
    cover. ``videos`` (a folder of ``<name><video_ext>``) or ``frames`` (a folder of ``<name>/`` frame dumps, named by
    ``frame_template`` from 1 at ``fps``) is the input. ``encoder`` is a spec string (or a built
    :class:`FrameEncoder`). Returns a summary: clips done before, written now, frames encoded, seconds.
    """
    from tqdm.auto import tqdm

    if dataset not in DATASETS:
        from mmreason.registry import did_you_mean

        raise ExtractionInputError(f"dataset {dataset!r} has no extraction layout{did_you_mean(dataset, DATASETS)} "
                                   f"(choose from {', '.join(DATASETS)})")
    if (videos is None) == (frames is None):
        raise ExtractionInputError("give exactly one input: videos= (a folder of video files) or frames= (a folder "
                                   "of frame folders)")
    if store not in ("npy", "lmdb") or (dataset in PER_SEGMENT and store != "npy"):
        raise ExtractionInputError(f"store {store!r}: {dataset} writes npy; rulstm writes npy or lmdb")
    if frames_per_segment < 1 or batch_size < 1 or fps <= 0:
        raise ExtractionInputError(f"frames_per_segment ({frames_per_segment}), batch_size ({batch_size}) and fps "
                                   f"({fps}) must be positive")
    annotations = [Path(a) for a in annotations]
    if not annotations:
        raise ExtractionInputError(f"no annotation files given: {dataset} needs "
                                   + {"ego4d_lta": "fho_lta_*.json files", "egotopo_lta": "EGO-TOPO split files",
                                      "rulstm": "RULSTM split CSVs"}[dataset])
    from_folder = frames is not None
    root = Path(frames if from_folder else videos)
    if not root.is_dir():
        raise ExtractionInputError(f"{root}: {'frames' if from_folder else 'videos'} folder not found")
    output = Path(output)
    spec = encoder if isinstance(encoder, str) else encoder.spec

    # ---- what to encode: annotations parsed, finished clips skipped, every remaining input probed; all before the
    # encoder is loaded
    if dataset in PER_SEGMENT:
        units = _segment_times(dataset, annotations, frames_per_segment, fps)
        jobs = [_Job(uid, _source(uid, root, from_folder, video_ext), times=t) for uid, t in sorted(units.items())]
    else:
        units = _rulstm_frames(annotations, fps, time_step, sequence_length)
        jobs = [_Job(v, _source(v, root, from_folder, video_ext), frames=f) for v, f in sorted(units.items())]
    settings = {"format": FORMAT_VERSION, "dataset": dataset, "encoder": spec, "store": store,
                "layout": "per_action [A, T, D]" if dataset in PER_SEGMENT else
                ("per_frame lmdb" if store == "lmdb" else "per_frame [F, D]"),
                "frames_per_segment": frames_per_segment if dataset in PER_SEGMENT else None,
                "fps": fps, "time_step": time_step if dataset == "rulstm" else None,
                "sequence_length": sequence_length if dataset == "rulstm" else None,
                "frame_template": frame_template if from_folder else None}
    _claim_output(output, settings)
    for stale in output.glob(".*.tmp"):   # temporary files of a killed run (never a finished clip)
        stale.unlink()
    env = _open_lmdb(output) if store == "lmdb" else None
    try:
        work = _pending(jobs, store, env, output)
        _check(work, dataset, from_folder, frame_template, fps)
        if store == "npy" and dataset == "rulstm":   # dense: every frame of the video at fps
            for job in work:
                last = max(int(np.floor(job.duration * fps + 1e-6)), int(job.frames[-1]) if len(job.frames) else 0)
                job.todo = np.arange(1, last + 1)
        summary = {"output": str(output), "encoder": spec, "jobs": len(jobs), "done_before": len(jobs) - len(work),
                   "written": len(work), "frames_encoded": 0, "seconds": 0.0}
        if not work:
            log.info(f"extract: all {len(jobs)} clips already in {output}")
            return summary
        model = load_encoder(spec, device=device, batch_size=batch_size) if isinstance(encoder, str) else encoder
        _record_dim(output, settings, model, spec)
        read = lambda job, t=None, n=None: _read(job, from_folder, frame_template, fps, times=t, numbers=n)  # noqa: E731
        start = time.perf_counter()
        total = sum(job.todo.size if job.todo is not None else int(np.isfinite(job.times).sum()) for job in work)
        with tqdm(total=total, unit="frame", desc=f"extract {dataset}", disable=not progress, dynamic_ncols=True) as bar:
            for job in work:
                bar.set_postfix_str(job.name, refresh=False)
                _extract_job(job, read, model, bar, output, env, batch_size)
        summary.update(dim=model.dim, frames_encoded=total, seconds=time.perf_counter() - start)
        log.info(f"extract: {len(work)} written, {summary['done_before']} already done, {total} frames in "
             f"{summary['seconds']:.1f} s -> {output}")
        return summary
    finally:
        if env is not None:
            env.close()


def _record_dim(output: Path, settings: dict, model: FrameEncoder, spec: str) -> None:
    from mmreason.utils.io import atomic_write_json

    dim = read_manifest(output).get("dim")
    if dim not in (None, model.dim):
        raise ExtractionInputError(f"{output}: holds {dim}-d features, encoder {spec!r} gives {model.dim}-d")
    if dim is None:
        atomic_write_json(output / MANIFEST, {**settings, "dim": model.dim})


def _extract_job(job: _Job, read, model: FrameEncoder, bar, output: Path, env, batch_size: int) -> None:
    """Encode one clip / video and write it atomically."""
    if job.times is not None:                                              # per segment: [A, T, D]
        rows = np.isfinite(job.times[:, 0])
        flat = job.times[rows].reshape(-1)                                  # [A' T] seconds
        feats = _encode_chunks(job, _chunks(len(flat), batch_size), lambda s: read(job, t=flat[s]), model, bar)
        array = np.zeros((len(job.times), job.times.shape[1], model.dim), np.float32)
        array[rows] = feats.reshape(int(rows.sum()), job.times.shape[1], model.dim)
        _write_npy(output / f"{job.name}.npy", array)
        return
    numbers = job.todo
    feats = _encode_chunks(job, _chunks(len(numbers), batch_size), lambda s: read(job, n=numbers[s]), model, bar)
    if env is None:                                                         # rulstm npy: [F, D], row f - 1
        _write_npy(output / f"{job.name}.npy", feats)
        return
    from mmreason.data.anticipation import rulstm_frame_key

    with env.begin(write=True) as txn:                                      # one transaction: all its frames or none
        for f, vec in zip(numbers.tolist(), feats):
            txn.put(rulstm_frame_key(job.name, f).encode("utf-8"), np.ascontiguousarray(vec).tobytes())


def _pending(jobs: list[_Job], store: str, env, output: Path) -> list[_Job]:
    """The jobs that still need work: npy files not written yet; LMDB videos with frames not stored yet."""
    if store == "npy":
        return [j for j in jobs if not (output / f"{j.name}.npy").is_file()]
    from mmreason.data.anticipation import rulstm_frame_key

    out = []
    with env.begin() as txn:
        for job in jobs:
            job.todo = np.array([f for f in job.frames.tolist()
                                 if txn.get(rulstm_frame_key(job.name, f).encode("utf-8")) is None], np.int64)
            if len(job.todo):
                out.append(job)
    return out
