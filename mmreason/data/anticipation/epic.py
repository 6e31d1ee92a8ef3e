"""EPIC-Kitchens-55 / EGTEA Gaze+: class lists, RULSTM ``actions.csv`` and long-term (verb-set) segments."""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from mmreason.data.anticipation.vocab import (
    ActionVocab,
    AnnotationError,
    Vocabulary,
    _parse_instances,
    _read_csv_rows,
    _require_file,
)
from mmreason.utils.io import read_json


def load_epic_classes(path: str | Path, kind: str) -> Vocabulary:
    """Read ``EPIC_verb_classes.csv`` / ``EPIC_noun_classes.csv``.

    EK-55 columns are ``verb_id,class_key,verbs`` (a Python-list string of instances); EK-100 columns are
    ``id,key,instances,category``. Both have the class id first and the key second, which is all this needs.
    """
    path = _require_file(path, f"EPIC {kind} classes CSV")
    rows = _read_csv_rows(path)
    if not rows:
        raise AnnotationError(f"{path}: empty {kind} classes CSV")
    header = [h.lower() for h in rows[0]]
    body = rows[1:] if not header[0].isdigit() else rows
    entries: dict[int, tuple[str, tuple[str, ...]]] = {}
    for line, row in enumerate(body, start=2):
        if len(row) < 2 or not row[0].lstrip("-").isdigit():
            raise AnnotationError(f"{path}: line {line} should start with '<class id>,<class key>', got {row}")
        instances = ()
        for cell in row[2:]:
            instances = _parse_instances(cell)
            if instances:
                break
        entries[int(row[0])] = (row[1], instances)
    ids = sorted(entries)
    if ids != list(range(len(ids))):
        raise AnnotationError(f"{path}: class ids must run 0..{len(ids) - 1} without gaps")
    return Vocabulary.from_names([entries[i][0] for i in ids], kind, synonyms=[entries[i][1] for i in ids])


def load_rulstm_actions(path: str | Path) -> list[tuple[int, int, str]]:
    """Read an RULSTM ``actions.csv`` -> ``[(verb, noun, name)]`` indexed by action id.

    Handles the three layouts RULSTM ships: EK-55 ``id,action,verb,noun`` (header), EK-100 with a header that
    names ``id``, ``verb``, ``noun`` in any order, and EGTEA without header ``id, <verb>_<noun>, <Name>``.
    """
    path = _require_file(path, "actions CSV")
    rows = _read_csv_rows(path)
    if not rows:
        raise AnnotationError(f"{path}: empty actions CSV")
    out: dict[int, tuple[int, int, str]] = {}
    header = [h.lower() for h in rows[0]]
    if "verb" in header and "noun" in header and "id" in header:
        iv, inn, iid = header.index("verb"), header.index("noun"), header.index("id")
        ia = header.index("action") if "action" in header else None
        for line, row in enumerate(rows[1:], start=2):
            try:
                out[int(row[iid])] = (int(row[iv]), int(row[inn]), row[ia] if ia is not None else f"{row[iv]}_{row[inn]}")
            except (ValueError, IndexError) as e:
                raise AnnotationError(f"{path}: line {line} is malformed ({row}): {e}") from e
    else:  # EGTEA: "0, 0_0, Inspect/Read_recipe"
        for line, row in enumerate(rows, start=1):
            try:
                v, n = row[1].split("_")
                out[int(row[0])] = (int(v), int(n), row[2] if len(row) > 2 else row[1])
            except (ValueError, IndexError) as e:
                raise AnnotationError(f"{path}: line {line} should read 'id, verb_noun, Name', got {row}") from e
    ids = sorted(out)
    if ids != list(range(len(ids))):
        raise AnnotationError(f"{path}: action ids must run 0..{len(ids) - 1} without gaps")
    return [out[i] for i in ids]


def load_epic_vocab(verb_classes: str | Path, noun_classes: str | Path,
                    actions_csv: str | Path | None = None) -> ActionVocab:
    """EPIC-Kitchens vocabulary from ``EPIC_verb_classes.csv``, ``EPIC_noun_classes.csv`` and RULSTM ``actions.csv``."""
    verbs = load_epic_classes(verb_classes, "verb")
    nouns = load_epic_classes(noun_classes, "noun")
    actions = None
    if actions_csv is not None:
        rows = load_rulstm_actions(actions_csv)
        for a, (v, n, _) in enumerate(rows):
            if not (0 <= v < len(verbs) and 0 <= n < len(nouns)):
                raise AnnotationError(f"{actions_csv}: action {a} uses verb {v} / noun {n} outside the class lists")
        actions = tuple((v, n) for v, n, _ in rows)
    return ActionVocab(verbs, nouns, actions)


def load_egtea_vocab(actions_csv: str | Path) -> ActionVocab:
    """EGTEA Gaze+ vocabulary from RULSTM's ``data/egtea/actions.csv`` (names like ``"Cut_bell:pepper"``)."""
    rows = load_rulstm_actions(actions_csv)
    verbs: dict[int, str] = {}
    nouns: dict[int, str] = {}
    for v, n, name in rows:
        verb_text, _, noun_text = name.partition("_")
        verbs.setdefault(v, verb_text)
        nouns.setdefault(n, noun_text or str(n))
    for table, kind in ((verbs, "verb"), (nouns, "noun")):
        if sorted(table) != list(range(len(table))):
            raise AnnotationError(f"{actions_csv}: {kind} ids must run 0..{len(table) - 1}")
    return ActionVocab(Vocabulary.from_names([verbs[i] for i in range(len(verbs))], "verb", reverse_colon=False),
                       Vocabulary.from_names([nouns[i] for i in range(len(nouns))], "noun", reverse_colon=False),
                       tuple((v, n) for v, n, _ in rows))


@dataclass(frozen=True)
class Segment:
    """An annotated segment of a video with its relative start/end position in [0, 1].

    ``start_frame``/``end_frame``/``num_frames`` are set when the source gives frames (EGO-TOPO split files); then
    :func:`verb_set_samples` applies EGO-TOPO's integer rule exactly (observation ends at ``int(r * num_frames)``).
    """

    video_id: str
    action_idx: int
    verb_label: int
    noun_label: int
    slocation: float
    elocation: float
    start_frame: int = -1
    end_frame: int = -1
    num_frames: int = 0


@dataclass(frozen=True)
class VerbSetSample:
    """Observe the first ``ratio`` of a video; the target is the multi-hot set of verbs that occur afterwards."""

    video_id: str
    ratio: float
    observed: tuple[Segment, ...]
    target: np.ndarray            # [num_verbs] bool
    last_observed_id: str
    future: tuple[Segment, ...] = ()   # the segments after the observation, in start order


def _positions_from_times(starts: Sequence[float], ends: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    # Reconstruction where the file has no slocation/elocation: positions relative to the last annotated end.
    length = max(max(ends), 1e-9)
    return np.asarray(starts, float) / length, np.asarray(ends, float) / length


def read_lta_segments_json(path: str | Path) -> dict[str, list[Segment]]:
    """Read an AntGPT/EGO-TOPO-style LTA JSON (``{"clips": [...]}`` with Ego4D field names).

    Records carry ``clip_uid`` (the video), ``action_idx``, ``verb_label``, ``noun_label`` and either
    ``slocation``/``elocation`` (relative positions, as AntGPT's converted EK-55/EGTEA files do) or
    ``action_clip_start_sec``/``action_clip_end_sec``, in which case positions are taken relative to the last
    annotated end of the video (EGO-TOPO's video length for EGTEA; for EK-55 it reads the frame counts, see
    :func:`read_egotopo_split`).
    """
    path = _require_file(path, "long-term anticipation annotation file")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("clips"), list):
        raise AnnotationError(f"{path}: expected a JSON object with a 'clips' list")
    raw: dict[str, list[dict]] = defaultdict(list)
    for i, e in enumerate(data["clips"]):
        if not isinstance(e, dict) or "clip_uid" not in e or "verb_label" not in e:
            raise AnnotationError(f"{path}: clips[{i}] needs at least clip_uid and verb_label")
        raw[str(e["clip_uid"])].append(e)
    out: dict[str, list[Segment]] = {}
    for vid, recs in raw.items():
        recs.sort(key=lambda r: int(r.get("action_idx", 0)))
        try:
            if all("slocation" in r and "elocation" in r for r in recs):
                s = [float(r["slocation"]) for r in recs]
                e = [float(r["elocation"]) for r in recs]
            else:
                s, e = _positions_from_times([float(r["action_clip_start_sec"]) for r in recs],
                                             [float(r["action_clip_end_sec"]) for r in recs])
        except (KeyError, ValueError, TypeError) as err:
            raise AnnotationError(f"{path}: video {vid} needs slocation/elocation or action_clip_start_sec/"
                                  f"action_clip_end_sec on every record ({err!r})") from err
        out[vid] = [Segment(vid, int(r.get("action_idx", j)), int(r["verb_label"]), int(r.get("noun_label", -1)),
                            float(s[j]), float(e[j])) for j, r in enumerate(recs)]
    return out


def read_epic55_action_labels(path: str | Path, video_ids: Iterable[str] | None = None) -> dict[str, list[Segment]]:
    """Read EK-55 ``EPIC_train_action_labels.csv`` (columns ``video_id, start_frame, stop_frame, verb_class,
    noun_class``, ...) as segments; positions are frames over the video's last annotated stop frame."""
    path = _require_file(path, "EPIC action labels CSV")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"video_id", "start_frame", "stop_frame", "verb_class", "noun_class"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise AnnotationError(f"{path}: needs columns {sorted(need)}, found {reader.fieldnames}")
        keep = set(video_ids) if video_ids is not None else None
        rows: dict[str, list[dict]] = defaultdict(list)
        for r in reader:
            if keep is None or r["video_id"] in keep:
                rows[r["video_id"]].append(r)
    out = {}
    for vid, rs in rows.items():
        rs.sort(key=lambda r: (int(r["start_frame"]), int(r["stop_frame"])))
        s, e = _positions_from_times([int(r["start_frame"]) for r in rs], [int(r["stop_frame"]) for r in rs])
        out[vid] = [Segment(vid, j, int(r["verb_class"]), int(r["noun_class"]), float(s[j]), float(e[j]))
                    for j, r in enumerate(rs)]
    return out


def read_egtea_action_labels(path: str | Path, vocab: ActionVocab) -> dict[str, list[Segment]]:
    """Read EGTEA Gaze+ raw ``action_labels.csv`` (``;``-separated, header line starting with ``#``: clip id, clip
    prefix, video session, start/end time in ms, action, verb, noun(s)) as segments per video session.

    Verb and noun texts are mapped to ``vocab`` ids (e.g. from :func:`load_egtea_vocab`); only the first noun is
    kept, as RULSTM does (its issue #8). Positions are times over the session's last annotated end.
    """
    path = _require_file(path, "EGTEA action labels CSV")
    rows: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in line.split(";")]
            try:
                session, t0, t1, verb_text, nouns_text = cells[2], int(cells[3]), int(cells[4]), cells[6], cells[7]
            except (IndexError, ValueError) as e:
                raise AnnotationError(f"{path}: line {line_no} should have 8 ';'-separated fields with times in ms "
                                      f"({e})") from e
            noun_text = nouns_text.split(",")[0].strip()
            verb = vocab.verbs.lookup(verb_text, fuzzy_cutoff=None)
            noun = vocab.nouns.lookup(noun_text, fuzzy_cutoff=None)
            if verb is None or noun is None:
                raise AnnotationError(f"{path}: line {line_no}: verb {verb_text!r} or noun {noun_text!r} is not in "
                                      "the vocabulary")
            rows[session].append((t0, t1, verb, noun))
    out = {}
    for vid, rs in rows.items():
        rs.sort()
        s, e = _positions_from_times([r[0] for r in rs], [r[1] for r in rs])
        out[vid] = [Segment(vid, j, r[2], r[3], float(s[j]), float(e[j])) for j, r in enumerate(rs)]
    return out


def read_egotopo_split(path: str | Path, nframes_path: str | Path | None = None) -> dict[str, list[Segment]]:
    """Read an EGO-TOPO long-term anticipation split (``data/{epic,gtea}/split/{train,val}_S1.csv``): tab-separated
    rows ``path start_frame end_frame verb noun`` (``EpicRawFramesRecord``), grouped by video and sorted by
    ``(start_frame, end_frame)``; ``action_idx`` is the position in that order (the row of the video's per-segment
    features). The video length comes from ``<split>_nframes.csv`` (``path<TAB>num_frames``; default: next to the
    split file, as EGO-TOPO reads it), else from the last annotated end frame (what EGO-TOPO uses for EGTEA);
    positions are frames over that length. The video id is the last part of ``path`` (``P01/P01_01`` -> ``P01_01``).
    """
    path = _require_file(path, "EGO-TOPO split file")
    rows: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.strip().split("\t")
        try:
            vid, start, end, verb, noun = cells[0], int(cells[1]), int(cells[2]), int(cells[3]), int(cells[4])
        except (IndexError, ValueError) as e:
            raise AnnotationError(f"{path}: line {line_no} should be 'path<TAB>start_frame<TAB>end_frame<TAB>verb<TAB>"
                                  f"noun' ({e})") from e
        rows[vid].append((start, end, verb, noun))
    default_nframes = path.with_name(path.stem + "_nframes.csv")
    nframes_file = Path(nframes_path) if nframes_path else (default_nframes if default_nframes.is_file() else None)
    lengths: dict[str, int] = {}
    if nframes_file is not None:
        for line_no, line in enumerate(_require_file(nframes_file, "EGO-TOPO frame counts").read_text(
                encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    vid, n = line.strip().split("\t")[:2]
                    lengths[vid] = int(n)
                except ValueError as e:
                    raise AnnotationError(f"{nframes_file}: line {line_no} should be 'path<TAB>num_frames' "
                                          f"({e})") from e
    out: dict[str, list[Segment]] = {}
    for vid, rs in rows.items():
        rs.sort()
        if nframes_file is not None and vid not in lengths:
            raise AnnotationError(f"{nframes_file}: no frame count for video {vid!r} of {path}")
        length = lengths.get(vid) or max(r[1] for r in rs)
        name = vid.rstrip("/").split("/")[-1]
        out[name] = [Segment(name, j, v, n, s / length, e / length, s, e, length) for j, (s, e, v, n) in enumerate(rs)]
    return out


def load_egtea_idx_vocab(verb_idx: str | Path, noun_idx: str | Path) -> ActionVocab:
    """EGTEA Gaze+ classes from its ``action_annotation/verb_idx.txt`` and ``noun_idx.txt`` (lines ``<name> <id>``,
    ids from 1; names may hold spaces, e.g. ``Turn on 6``): class id = id - 1, as EGO-TOPO parses them
    (19 verbs, 53 nouns)."""
    tables = []
    for file, kind in ((verb_idx, "verb"), (noun_idx, "noun")):
        file = _require_file(file, f"EGTEA {kind} index file")
        names: dict[int, str] = {}
        for line_no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            *words, idx = line.split()
            if not words or not idx.isdigit():
                raise AnnotationError(f"{file}: line {line_no} should be '<name> <id>', got {line!r}")
            names[int(idx) - 1] = " ".join(words).lower()
        if sorted(names) != list(range(len(names))):
            raise AnnotationError(f"{file}: {kind} ids must run 1..{len(names)}")
        tables.append(Vocabulary.from_names([names[i] for i in range(len(names))], kind, reverse_colon=False))
    return ActionVocab(tables[0], tables[1])


def verb_set_samples(videos: Mapping[str, Sequence[Segment]], num_verbs: int,
                     ratios: Sequence[float] = (0.25, 0.5, 0.75), min_observed: int = 3,
                     min_future: int = 3) -> list[VerbSetSample]:
    """AntGPT's ``get_future_anno``: observed = ``elocation <= r``, future = ``slocation > r``; keep samples with
    at least ``min_observed`` and ``min_future`` segments (3 and 3 in the official code). Segments read with frames
    (EGO-TOPO split files) use EGO-TOPO's ``load_annotations_anticipation`` rule on frames instead:
    ``t = int(r * num_frames)``, observed = ``end_frame <= t``, future = ``start_frame > t``."""
    out = []
    for vid, segs in videos.items():
        for r in ratios:
            if segs and all(s.num_frames > 0 for s in segs):
                t = int(r * segs[0].num_frames)
                obs = [s for s in segs if s.end_frame <= t]
                fut = [s for s in segs if s.start_frame > t]
            else:
                obs = [s for s in segs if s.elocation <= r]
                fut = [s for s in segs if s.slocation > r]
            if len(obs) < min_observed or len(fut) < min_future:
                continue
            target = np.zeros(num_verbs, dtype=bool)
            for s in fut:
                if not 0 <= s.verb_label < num_verbs:
                    raise AnnotationError(f"video {vid}: verb label {s.verb_label} outside 0..{num_verbs - 1}")
                target[s.verb_label] = True
            out.append(VerbSetSample(vid, float(r), tuple(obs), target, f"{vid}_{obs[-1].action_idx}", tuple(fut)))
    return out
