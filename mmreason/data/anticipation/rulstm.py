"""RULSTM short-term anticipation: split CSVs, the 0.25 s past-frame grid, LMDB / npy feature stores, and the
annotated segments that cover each past frame (per-step observed labels)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mmreason.data.anticipation.vocab import (
    AnnotationError,
    _read_csv_rows,
    _require_file,
)


@dataclass(frozen=True)
class RulstmRow:
    """One row of an RULSTM split CSV (labels are -1 in challenge/test files). ``id`` is an int (EK-55, EGTEA)
    or a string such as ``"P01_11_0"`` (EK-100's narration ids)."""

    id: int | str
    video: str
    start_frame: int
    end_frame: int
    verb: int = -1
    noun: int = -1
    action: int = -1


def read_rulstm_csv(path: str | Path) -> list[RulstmRow]:
    """Read ``training.csv``/``validation.csv`` (``id,video,start,end,verb,noun,action``, no header) or a test
    file with only ``id,video,start,end``. Numeric ids become ints; EK-100's ``P01_11_0`` ids stay strings
    (RULSTM reads the first column as a pandas index, whatever its type)."""
    path = _require_file(path, "RULSTM split CSV")
    out = []
    for line, row in enumerate(_read_csv_rows(path), start=1):
        try:
            row_id = int(row[0]) if row and row[0].lstrip("-").isdigit() else row[0]
            if len(row) >= 7:
                out.append(RulstmRow(row_id, row[1], int(row[2]), int(row[3]), int(row[4]), int(row[5]), int(row[6])))
            elif len(row) == 4:
                out.append(RulstmRow(row_id, row[1], int(row[2]), int(row[3])))
            else:
                raise ValueError(f"{len(row)} columns")
        except ValueError as e:
            raise AnnotationError(f"{path}: line {line} should be 'id,video,start,end[,verb,noun,action]', "
                                  f"got {row} ({e})") from e
    return out


def rulstm_past_frames(start_frame: int, *, fps: float = 30.0, time_step: float = 0.25,
                       sequence_length: int = 14) -> np.ndarray:
    """Frame numbers of the ``sequence_length`` features before an action, exactly as RULSTM samples them.

    Time stamps ``sequence_length*step ... step`` seconds before the action start, floored to frames; frames
    before 1 are replaced by the earliest valid one. The sequence is usable only when ``min() >= 1``.
    """
    stamps = np.arange(time_step, time_step * (sequence_length + 1), time_step)[::-1]
    frames = np.floor((start_frame / fps - stamps) * fps).astype(int)
    if frames.max() >= 1:
        frames[frames < 1] = frames[frames >= 1].min()
    return frames


class SegmentIndex:
    """Annotated action segments per video on the frame axis of the RULSTM CSVs, to label any frame with the
    action being performed in it (the EPIC / EGTEA segments that RULSTM's split CSVs list, ``start`` and
    ``end`` inclusive, 30 fps frame numbers). Segments without a label (``action < 0``) are ignored.

    ``overlap`` decides frames inside several segments with different actions (EPIC segments overlap):
    ``"latest"`` = the action of the segment that started last (the one just begun), ``"unknown"`` = no label.
    """

    def __init__(self, rows: Iterable[RulstmRow], overlap: str = "latest"):
        if overlap not in ("latest", "unknown"):
            raise ValueError(f"overlap={overlap!r}: use 'latest' or 'unknown'")
        self.overlap = overlap
        per_video: dict[str, list[tuple[int, int, int]]] = {}
        for r in rows:
            if r.action >= 0:
                per_video.setdefault(r.video, []).append((r.start_frame, r.end_frame, r.action))
        # per video: starts, ends, actions sorted by (start, end), so the last covering segment started last
        self.videos = {v: tuple(np.array(col, dtype=np.int64) for col in zip(*sorted(segs)))
                       for v, segs in per_video.items()}

    @classmethod
    def from_csvs(cls, paths: Iterable[str | Path], overlap: str = "latest") -> "SegmentIndex":
        return cls([row for p in paths for row in read_rulstm_csv(p)], overlap)

    def labels(self, video: str, frames: Sequence[int], unknown: int = -1) -> np.ndarray:
        """``[len(frames)]`` int64: the action performed in each frame, ``unknown`` where no segment covers it."""
        frames = np.asarray(frames, dtype=np.int64)
        out = np.full(len(frames), unknown, dtype=np.int64)
        if video not in self.videos:
            return out
        starts, ends, actions = self.videos[video]
        covers = (starts[None, :] <= frames[:, None]) & (frames[:, None] <= ends[None, :])   # [F, S]
        covered = covers.any(axis=1)
        latest = np.where(covers, np.arange(len(starts)), -1).max(axis=1)   # segments are sorted by start
        out[covered] = actions[latest[covered]]
        if self.overlap == "unknown":                                       # several different actions: no label
            big = np.iinfo(np.int64).max
            lowest = np.where(covers, actions, big).min(axis=1)
            highest = np.where(covers, actions, -1).max(axis=1)
            out[covered & (lowest != highest)] = unknown
        return out


def rulstm_frame_key(video: str, frame: int, img_tmpl: str = "frame_{:010d}.jpg") -> str:
    """LMDB key RULSTM writes for a frame: ``"{video}_frame_{frame:010d}.jpg"``."""
    return f"{video}_{img_tmpl.format(int(frame))}"


# One read-only environment per LMDB folder and process: LMDB refuses to open the same folder twice in a
# process, and an environment must not cross a fork (DataLoader workers reopen their own).
_LMDB_ENVS: dict[tuple[str, int], Any] = {}


class LmdbFeatures:
    """Per-frame float32 features in an RULSTM LMDB (key -> raw float32 bytes). Opened lazily, read-only."""

    def __init__(self, path: str | Path, img_tmpl: str = "frame_{:010d}.jpg"):
        self.path = _require_file(path, "LMDB feature folder")
        self.img_tmpl = img_tmpl

    def _open(self):
        import os

        key = (str(self.path.resolve()), os.getpid())
        env = _LMDB_ENVS.get(key)
        if env is None:
            import lmdb  # optional dependency, only for LMDB features

            try:
                env = lmdb.open(key[0], readonly=True, lock=False, readahead=False, max_readers=128)
            except lmdb.Error as e:
                raise AnnotationError(f"{self.path}: cannot open as an LMDB environment ({e})") from e
            _LMDB_ENVS[key] = env
        return env

    def read(self, video: str, frames: Sequence[int]) -> np.ndarray:
        """``[len(frames), D]`` float32."""
        env = self._open()
        out = []
        with env.begin() as txn:
            for fr in frames:
                key = rulstm_frame_key(video, fr, self.img_tmpl)
                buf = txn.get(key.encode("utf-8"))
                if buf is None:
                    raise KeyError(f"{self.path}: no feature under key {key!r}")
                out.append(np.frombuffer(buf, dtype=np.float32))
        dims = {len(x) for x in out}
        if len(dims) != 1:
            raise AnnotationError(f"{self.path}: features of {video} have different sizes {sorted(dims)}")
        return np.stack(out)


class NpyFeatures:
    """Per-frame features as one ``{video}.npy`` array ``[num_frames, D]`` per video; row = frame number - 1
    (RULSTM frame numbers start at 1)."""

    def __init__(self, folder: str | Path):
        self.folder = _require_file(folder, "feature folder")
        self._cache: dict[str, np.ndarray] = {}

    def read(self, video: str, frames: Sequence[int]) -> np.ndarray:
        arr = self._cache.get(video)
        if arr is None:
            file = self.folder / f"{video}.npy"
            if not file.exists():
                raise FileNotFoundError(f"{file}: feature file for video {video!r} not found")
            arr = np.load(file, mmap_mode="r")
            if arr.ndim != 2:
                raise AnnotationError(f"{file}: expected [num_frames, D], got shape {arr.shape}")
            self._cache[video] = arr
        idx = np.asarray(frames, dtype=np.int64) - 1
        if idx.min() < 0 or idx.max() >= len(arr):
            raise KeyError(f"{self.folder / (video + '.npy')}: frames {int(idx.min()) + 1}..{int(idx.max()) + 1} "
                           f"outside 1..{len(arr)}")
        return np.asarray(arr[idx], dtype=np.float32)


def open_features(path: str | Path, fmt: str = "lmdb", img_tmpl: str = "frame_{:010d}.jpg"):
    """A feature store: ``"lmdb"`` (RULSTM) or ``"npy"`` (one array per video)."""
    if fmt == "lmdb":
        return LmdbFeatures(path, img_tmpl)
    if fmt == "npy":
        return NpyFeatures(path)
    raise ValueError(f"unknown feature format {fmt!r}; use 'lmdb' or 'npy'")


class RulstmFeatureDataset:
    """RULSTM-protocol samples: for each CSV row, the 14 past features of every modality and the labels.

    Item: ``{"features": {modality: float32 [S_enc + S_ant, D_m]}, "action", "verb", "noun": int, "id": int}``.
    Rows whose sequence starts before frame 1 are set aside in ``discarded`` (RULSTM scores them as wrong).
    """

    def __init__(self, csv_path: str | Path, stores: Mapping[str, Any], *, fps: float = 30.0,
                 time_step: float = 0.25, sequence_length: int = 14):
        if not stores:
            raise ValueError("RulstmFeatureDataset needs at least one feature store (rgb, flow or obj)")
        self.stores = dict(stores)
        self.rows: list[RulstmRow] = []
        self.frames: list[np.ndarray] = []
        self.discarded: list[RulstmRow] = []
        for row in read_rulstm_csv(csv_path):
            frames = rulstm_past_frames(row.start_frame, fps=fps, time_step=time_step, sequence_length=sequence_length)
            if frames.min() >= 1:
                self.rows.append(row)
                self.frames.append(frames)
            else:
                self.discarded.append(row)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        feats = {m: store.read(row.video, self.frames[i]) for m, store in self.stores.items()}
        return {"features": feats, "action": row.action, "verb": row.verb, "noun": row.noun, "id": row.id}
