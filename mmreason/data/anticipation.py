"""Action-anticipation data: vocabularies, annotation readers, feature readers, submission writer, text mapper.

Formats (spec ``specs/anticipation_tal.md`` §1, checked against the official code):

* **Ego4D long-term anticipation** (``EGO4D/forecasting``): ``fho_lta_{train,val,test_unannotated}.json`` hold
  ``{"clips": [...]}``, one record per annotated action with ``clip_uid``, ``action_idx``, ``verb_label``,
  ``noun_label`` (absent in the test file), ``action_clip_start_sec``/``action_clip_end_sec``, ``verb``,
  ``noun``, ``video_uid``. Actions are grouped by ``clip_uid`` and sorted by ``action_idx``; every window of
  N = 8 observed + Z = 20 future actions is a sample, keyed ``"{clip_uid}_{action_idx of the last observed}"``.
  ``fho_lta_taxonomy.json`` is ``{"verbs": [...], "nouns": [...]}`` (list index = class id, names such as
  ``"take_(pick,_grab,_get)"``). The submission ``outputs.json`` maps each key to
  ``{"verb": K x Z ints, "noun": K x Z ints}`` with K = 5.
* **EPIC-Kitchens-55 / EGTEA Gaze+ long-term** (AntGPT ``gaze_lta_dataset.py``, EGO-TOPO splits): observe the
  first fraction r of a video, predict the *set* of verbs in the rest. A segment is observed when its end
  position ``elocation <= r`` and future when its start position ``slocation > r``; a sample needs at least 3
  of each.
* **RULSTM short-term anticipation** (``fpv-iplab/rulstm``): CSV rows ``id,video,start_frame,end_frame,verb,
  noun,action`` (no header; test rows stop after ``end_frame``); 14 features on a 0.25 s grid ending 0.25 s
  before the action (6 observed + 8 anticipation steps), read from LMDB keys ``"{video}_frame_{:010d}.jpg"``
  holding raw float32 vectors (RGB/flow 1024-d, object 352-d).

The :func:`map_sequence` mapper turns noisy LLM text into vocabulary ids (exact, then case-insensitive, then
fuzzy with rapidfuzz; unmappable phrases are dropped) and pads/truncates to Z, as AntGPT's post-processing does.
"""
from __future__ import annotations

import ast
import csv
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mmreason.utils.io import atomic_write_json, read_json


class AnnotationError(ValueError):
    """An annotation or feature file is malformed; the message names the file and what is wrong."""


def _require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    return path


# ================================================================================================ vocabularies

def normalize_phrase(text: str) -> str:
    """Lower-case, turn ``_ - /`` into spaces, drop other punctuation, collapse spaces (``"Turn-on"`` -> ``"turn on"``)."""
    text = text.lower().replace("_", " ").replace("-", " ").replace("/", " ")
    text = re.sub(r"[^a-z0-9: ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _split_class_name(raw: str, reverse_colon: bool = True) -> tuple[str, tuple[str, ...]]:
    """``"take_(pick,_grab,_get)"`` -> ``("take", ("pick", "grab", "get"))``; EPIC ``"board:cutting"`` ->
    ``"cutting board"`` (``reverse_colon``; EGTEA's ``"bell:pepper"`` is already in reading order)."""
    raw = raw.strip()
    synonyms: list[str] = []
    m = re.match(r"^(.*?)_?\((.*)\)\s*$", raw)
    if m:
        raw_main, inner = m.group(1), m.group(2)
        synonyms = [s.strip().strip("_").replace("_", " ") for s in inner.split(",") if s.strip().strip("_")]
    else:
        raw_main = raw
    main = raw_main.strip().strip("_")
    if ":" in main:  # EPIC keys put the modifier last: "board:cutting" is a cutting board
        parts = [p for p in main.split(":") if p]
        main = " ".join(reversed(parts) if reverse_colon else parts)
    return re.sub(r"\s+", " ", main.replace("_", " ").replace("-", " ")).strip(), tuple(synonyms)


@dataclass(frozen=True)
class Vocabulary:
    """Class id <-> text for one label kind (verb or noun); index = class id, as in the dataset's own file.

    ``names`` are the raw strings of the file, ``display`` the readable text (``"take"``), ``synonyms`` the
    alternatives the file lists (Ego4D ``"take_(pick,_grab,_get)"``, EPIC ``instances``).
    """

    names: tuple[str, ...]
    display: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]
    kind: str = "class"

    @classmethod
    def from_names(cls, names: Sequence[str], kind: str = "class", synonyms: Sequence[Sequence[str]] | None = None,
                   reverse_colon: bool = True) -> "Vocabulary":
        parsed = [_split_class_name(str(n), reverse_colon) for n in names]
        syn = [tuple(p[1]) + tuple(synonyms[i] if synonyms else ()) for i, p in enumerate(parsed)]
        return cls(tuple(str(n) for n in names), tuple(p[0] for p in parsed), tuple(syn), kind)

    def __len__(self) -> int:
        return len(self.names)

    def text(self, idx: int) -> str:
        return self.display[idx]

    def _tables(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        # Built lazily once; frozen dataclass, so cache on the instance dict.
        cached = self.__dict__.get("_cache")
        if cached is None:
            raw = {}
            for i, n in enumerate(self.names):
                raw.setdefault(n, i)
                raw.setdefault(self.display[i], i)
            primary, secondary = {}, {}
            for i in range(len(self)):
                primary.setdefault(normalize_phrase(self.names[i]), i)
                primary.setdefault(normalize_phrase(self.display[i]), i)
                for s in self.synonyms[i]:
                    secondary.setdefault(normalize_phrase(s), i)
            cached = (raw, primary, secondary)
            object.__setattr__(self, "_cache", cached)
        return cached

    def lookup(self, phrase: str, *, fuzzy_cutoff: float | None = 90.0) -> int | None:
        """Class id of ``phrase``: exact name, then case-insensitive/normalised name or synonym, then rapidfuzz.

        Fuzzy matching uses ``rapidfuzz.process.extractOne`` (default WRatio scorer) with ``score_cutoff``
        (90 in AntGPT's ``eval_v2.py``); ``fuzzy_cutoff=None`` turns it off. Returns None when nothing matches.
        """
        raw, primary, secondary = self._tables()
        if phrase in raw:
            return raw[phrase]
        key = normalize_phrase(phrase)
        if not key:
            return None
        if key in primary:
            return primary[key]
        if key in secondary:
            return secondary[key]
        if fuzzy_cutoff is None:
            return None
        hit = self.fuzzy(key, fuzzy_cutoff)
        return None if hit is None else hit[0]

    def fuzzy(self, phrase: str, cutoff: float = 90.0) -> tuple[int, float] | None:
        """Best (class id, score) by ``rapidfuzz.process.extractOne`` over normalised names and synonyms."""
        from rapidfuzz import process

        choices = self.normalized_forms()
        hit = process.extractOne(normalize_phrase(phrase), list(choices), score_cutoff=cutoff)
        return None if hit is None else (choices[hit[0]], float(hit[1]))

    def normalized_forms(self) -> dict[str, int]:
        """Every normalised name and synonym -> class id (names win over synonyms)."""
        _, primary, secondary = self._tables()
        return {**secondary, **primary}


@dataclass(frozen=True)
class ActionVocab:
    """Verbs, nouns and the action classes over them.

    ``actions[a] = (verb, noun)`` for datasets with an explicit action list (EPIC ``actions.csv``, EGTEA). For
    Ego4D, which has none, ``actions`` is None and the action id is the dense ``verb * num_nouns + noun``
    (the encoding used for the action edit distance).
    """

    verbs: Vocabulary
    nouns: Vocabulary
    actions: tuple[tuple[int, int], ...] | None = None

    @property
    def num_actions(self) -> int:
        return len(self.actions) if self.actions is not None else len(self.verbs) * len(self.nouns)

    def action_id(self, verb: int, noun: int) -> int | None:
        if self.actions is None:
            return int(verb) * len(self.nouns) + int(noun)
        table = self.__dict__.get("_pair_to_action")
        if table is None:
            table = {}
            for a, vn in enumerate(self.actions):
                table.setdefault(tuple(vn), a)
            object.__setattr__(self, "_pair_to_action", table)
        return table.get((int(verb), int(noun)))

    def verb_noun(self, action: int) -> tuple[int, int]:
        if self.actions is None:
            return divmod(int(action), len(self.nouns))
        return self.actions[action]

    def action_verbs(self) -> np.ndarray:
        """``[A]`` verb id of each action (for marginalisation)."""
        return np.array([self.verb_noun(a)[0] for a in range(self.num_actions)], dtype=np.int64)

    def action_nouns(self) -> np.ndarray:
        return np.array([self.verb_noun(a)[1] for a in range(self.num_actions)], dtype=np.int64)

    def action_text(self, action: int) -> str:
        v, n = self.verb_noun(action)
        return f"{self.verbs.text(v)} {self.nouns.text(n)}"

    def action_texts(self) -> list[str]:
        return [self.action_text(a) for a in range(self.num_actions)]


def load_ego4d_taxonomy(path: str | Path) -> ActionVocab:
    """Read ``fho_lta_taxonomy.json`` (``{"verbs": [...], "nouns": [...]}``); actions are dense verb x noun."""
    path = _require_file(path, "Ego4D taxonomy (fho_lta_taxonomy.json)")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("verbs"), list) or not isinstance(data.get("nouns"), list):
        raise AnnotationError(f"{path}: an Ego4D taxonomy needs 'verbs' and 'nouns' lists (index = class id)")
    return ActionVocab(Vocabulary.from_names(data["verbs"], "verb"), Vocabulary.from_names(data["nouns"], "noun"))


def _read_csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [[c.strip() for c in row] for row in csv.reader(f) if row and any(c.strip() for c in row)]


def _parse_instances(cell: str) -> tuple[str, ...]:
    cell = cell.strip()
    if cell.startswith("["):
        try:
            items = ast.literal_eval(cell)
            return tuple(str(x) for x in items)
        except (ValueError, SyntaxError):
            return ()
    return ()


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


def read_class_ids(path: str | Path) -> np.ndarray:
    """Class ids from the first column of a CSV with a header (``EPIC_many_shot_verbs.csv`` etc.)."""
    path = _require_file(path, "class-id CSV")
    rows = _read_csv_rows(path)
    try:
        return np.array([int(r[0]) for r in rows[1:]], dtype=np.int64)
    except ValueError as e:
        raise AnnotationError(f"{path}: the first column must hold integer class ids after a header ({e})") from e


# ================================================================================================ Ego4D LTA

@dataclass(frozen=True)
class Ego4DAction:
    """One annotated action of an Ego4D clip (labels are -1 in ``fho_lta_test_unannotated.json``)."""

    clip_uid: str
    action_idx: int
    verb_label: int
    noun_label: int
    start_sec: float
    end_sec: float
    video_uid: str = ""
    verb: str = ""
    noun: str = ""


@dataclass(frozen=True)
class LTAWindow:
    """N observed actions and the Z that follow; ``key`` is ``"{clip_uid}_{action_idx of last observed}"``."""

    key: str
    clip_uid: str
    observed: tuple[Ego4DAction, ...]
    future: tuple[Ego4DAction, ...]

    def observed_labels(self) -> np.ndarray:
        """``[N, 2]`` (verb, noun)."""
        return np.array([[a.verb_label, a.noun_label] for a in self.observed], dtype=np.int64)

    def future_labels(self) -> np.ndarray:
        """``[Z, 2]`` (verb, noun); -1 for the unannotated test split."""
        return np.array([[a.verb_label, a.noun_label] for a in self.future], dtype=np.int64)


def read_ego4d_lta(path: str | Path) -> dict[str, list[Ego4DAction]]:
    """Read ``fho_lta_{train,val,test_unannotated}.json`` -> clip_uid -> actions sorted by ``action_idx``."""
    path = _require_file(path, "Ego4D LTA annotation file")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("clips"), list):
        raise AnnotationError(f"{path}: an Ego4D LTA file is a JSON object with a 'clips' list")
    by_clip: dict[str, list[Ego4DAction]] = defaultdict(list)
    for i, e in enumerate(data["clips"]):
        try:
            by_clip[str(e["clip_uid"])].append(Ego4DAction(
                clip_uid=str(e["clip_uid"]), action_idx=int(e["action_idx"]),
                verb_label=int(e.get("verb_label", -1)), noun_label=int(e.get("noun_label", -1)),
                start_sec=float(e.get("action_clip_start_sec", 0.0)), end_sec=float(e.get("action_clip_end_sec", 0.0)),
                video_uid=str(e.get("video_uid", "")), verb=str(e.get("verb", "")), noun=str(e.get("noun", ""))))
        except (KeyError, TypeError, ValueError) as err:
            raise AnnotationError(f"{path}: clips[{i}] lacks or mistypes a field ({err!r}); each record needs "
                                  "clip_uid and action_idx (and verb_label/noun_label outside the test split)") from err
    return {uid: sorted(acts, key=lambda a: a.action_idx) for uid, acts in by_clip.items()}


def ego4d_lta_windows(clips: Mapping[str, Sequence[Ego4DAction]], num_observed: int = 8,
                      num_future: int = 20) -> list[LTAWindow]:
    """Every window of ``num_observed`` + ``num_future`` consecutive actions per clip (the official sampler:
    ``for i in range(len(clip) - Z - N + 1)``)."""
    out = []
    for uid, acts in clips.items():
        for i in range(len(acts) - num_future - num_observed + 1):
            obs = tuple(acts[i:i + num_observed])
            fut = tuple(acts[i + num_observed:i + num_observed + num_future])
            out.append(LTAWindow(f"{uid}_{obs[-1].action_idx}", uid, obs, fut))
    return out


def write_ego4d_submission(path: str | Path, keys: Sequence[str], verb_preds: Any, noun_preds: Any, *,
                           num_sequences: int = 5, num_future: int = 20) -> Path:
    """Write the EvalAI ``outputs.json``: ``{key: {"verb": K x Z ints, "noun": K x Z ints}}``.

    ``verb_preds``/``noun_preds`` are ``[N, K, Z]`` integer arrays (K = 5 candidate sequences of Z = 20).
    """
    verbs = np.asarray(verb_preds)
    nouns = np.asarray(noun_preds)
    expected = (len(keys), num_sequences, num_future)
    for name, arr in (("verb_preds", verbs), ("noun_preds", nouns)):
        if arr.shape != expected:
            raise ValueError(f"{name} has shape {arr.shape}; the Ego4D LTA submission needs [N, K, Z] = {expected}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    if len(set(keys)) != len(keys):
        raise ValueError("submission keys must be unique (one per clip_uid_actionidx)")
    record = {str(k): {"verb": verbs[i].tolist(), "noun": nouns[i].tolist()} for i, k in enumerate(keys)}
    return atomic_write_json(path, record, indent=None)


def check_ego4d_submission(submission: str | Path | Mapping[str, Any], expected_keys: Iterable[str], *,
                           num_sequences: int = 5, num_future: int = 20) -> list[str]:
    """Problems with a submission (missing keys, wrong K/Z); an empty list means it is well formed."""
    sub = read_json(submission) if isinstance(submission, (str, Path)) else submission
    problems = [f"missing key {k}" for k in expected_keys if k not in sub]
    for k, v in sub.items():
        for head in ("verb", "noun"):
            seqs = v.get(head) if isinstance(v, dict) else None
            if (not isinstance(seqs, list) or len(seqs) != num_sequences
                    or any(not isinstance(s, list) or len(s) != num_future for s in seqs)):
                problems.append(f"{k}: '{head}' must be {num_sequences} lists of {num_future} ids")
    return problems


# ================================================================================================ EK-55 / EGTEA LTA

@dataclass(frozen=True)
class Segment:
    """An annotated segment of a video with its relative start/end position in [0, 1]."""

    video_id: str
    action_idx: int
    verb_label: int
    noun_label: int
    slocation: float
    elocation: float


@dataclass(frozen=True)
class VerbSetSample:
    """Observe the first ``ratio`` of a video; the target is the multi-hot set of verbs that occur afterwards."""

    video_id: str
    ratio: float
    observed: tuple[Segment, ...]
    target: np.ndarray            # [num_verbs] bool
    last_observed_id: str


def _positions_from_times(starts: Sequence[float], ends: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    # Reconstruction where the file has no slocation/elocation: positions relative to the last annotated end.
    length = max(max(ends), 1e-9)
    return np.asarray(starts, float) / length, np.asarray(ends, float) / length


def read_lta_segments_json(path: str | Path) -> dict[str, list[Segment]]:
    """Read an AntGPT/EGO-TOPO-style LTA JSON (``{"clips": [...]}`` with Ego4D field names).

    Records carry ``clip_uid`` (the video), ``action_idx``, ``verb_label``, ``noun_label`` and either
    ``slocation``/``elocation`` (relative positions, as AntGPT's converted EK-55/EGTEA files do) or
    ``action_clip_start_sec``/``action_clip_end_sec``, in which case positions are taken relative to the last
    annotated end of the video (a reconstruction; EGO-TOPO uses the video length).
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


def verb_set_samples(videos: Mapping[str, Sequence[Segment]], num_verbs: int,
                     ratios: Sequence[float] = (0.25, 0.5, 0.75), min_observed: int = 3,
                     min_future: int = 3) -> list[VerbSetSample]:
    """AntGPT's ``get_future_anno``: observed = ``elocation <= r``, future = ``slocation > r``; keep samples with
    at least ``min_observed`` and ``min_future`` segments (3 and 3 in the official code)."""
    out = []
    for vid, segs in videos.items():
        for r in ratios:
            obs = [s for s in segs if s.elocation <= r]
            fut = [s for s in segs if s.slocation > r]
            if len(obs) < min_observed or len(fut) < min_future:
                continue
            target = np.zeros(num_verbs, dtype=bool)
            for s in fut:
                if not 0 <= s.verb_label < num_verbs:
                    raise AnnotationError(f"video {vid}: verb label {s.verb_label} outside 0..{num_verbs - 1}")
                target[s.verb_label] = True
            out.append(VerbSetSample(vid, float(r), tuple(obs), target, f"{vid}_{obs[-1].action_idx}"))
    return out


# ================================================================================================ RULSTM features

@dataclass(frozen=True)
class RulstmRow:
    """One row of an RULSTM split CSV (labels are -1 in challenge/test files)."""

    id: int
    video: str
    start_frame: int
    end_frame: int
    verb: int = -1
    noun: int = -1
    action: int = -1


def read_rulstm_csv(path: str | Path) -> list[RulstmRow]:
    """Read ``training.csv``/``validation.csv`` (``id,video,start,end,verb,noun,action``, no header) or a test
    file with only ``id,video,start,end``."""
    path = _require_file(path, "RULSTM split CSV")
    out = []
    for line, row in enumerate(_read_csv_rows(path), start=1):
        try:
            if len(row) >= 7:
                out.append(RulstmRow(int(row[0]), row[1], int(row[2]), int(row[3]), int(row[4]), int(row[5]), int(row[6])))
            elif len(row) == 4:
                out.append(RulstmRow(int(row[0]), row[1], int(row[2]), int(row[3])))
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


# ================================================================================================ text -> ids

_NUMBERING = re.compile(r"^\s*(?:step\s*)?(?:\(?\d+[\.\):]|[-*\u2022])\s*", re.IGNORECASE)
_LEADING_CONNECTIVES = {"then", "next", "and", "finally", "first", "after", "afterwards", "later", "also", "will",
                        "they", "he", "she", "person", "the", "camera", "wearer", "i", "you", "we", "to"}
_LEADING_FILLER = {"the", "a", "an", "some", "of", "into", "in", "on", "onto", "to", "from", "with", "at", "off",
                   "out", "up", "down", "over", "for", "its", "his", "her", "their", "my"}


def split_action_phrases(text: str) -> list[str]:
    """Split LLM output into action phrases: one per line, comma, semicolon or sentence; numbering and bullets removed."""
    phrases = []
    for line in re.split(r"[\n;]+", text):
        line = _NUMBERING.sub("", line)
        for part in re.split(r",|\.\s+", line):
            part = _NUMBERING.sub("", part).strip().strip(".").strip()
            if part:
                phrases.append(part)
    return phrases


@dataclass
class MappedSequence:
    """Result of :func:`map_sequence`: ``pairs`` of (verb, noun) ids, length Z after padding/truncation."""

    pairs: list[tuple[int, int]]
    num_mapped: int
    dropped: list[str] = field(default_factory=list)
    padded: int = 0

    @property
    def verbs(self) -> list[int]:
        return [v for v, _ in self.pairs]

    @property
    def nouns(self) -> list[int]:
        return [n for _, n in self.pairs]


def _base_forms(word: str) -> list[str]:
    """``"takes"`` -> take, ``"cutting"`` -> cut, ``"placed"`` -> place: the word and its likely base forms."""
    out = [word]
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            out += [stem, stem + "e"]
            if len(stem) > 2 and stem[-1] == stem[-2]:  # cutting -> cutt -> cut
                out.append(stem[:-1])
    return out


def _match_verb_prefix(words: list[str], verb_forms: Mapping[str, int], max_words: int = 3) -> tuple[int, int] | None:
    for n in range(min(max_words, len(words) - 1), 0, -1):   # leave at least one word for the noun
        for first in _base_forms(words[0]):
            cand = " ".join([first] + words[1:n])
            if cand in verb_forms:
                return verb_forms[cand], n
    return None


def _match_noun(words: list[str], nouns: Vocabulary, fuzzy_cutoff: float | None) -> int | None:
    """Longest exact (case-insensitive) leading word sequence, then fuzzy on all words, then on the first."""
    while len(words) > 1 and words[0] in _LEADING_FILLER:
        words = words[1:]
    for n in range(len(words), 0, -1):                 # "cutting board in the sink" -> "cutting board"
        hit = nouns.lookup(" ".join(words[:n]), fuzzy_cutoff=None)
        if hit is not None:
            return hit
    if fuzzy_cutoff is None or not words:
        return None
    hit = nouns.lookup(" ".join(words), fuzzy_cutoff=fuzzy_cutoff)
    if hit is None and len(words) > 1:
        hit = nouns.lookup(words[0], fuzzy_cutoff=fuzzy_cutoff)
    return hit


def map_action_phrase(phrase: str | tuple[str, str], vocab: ActionVocab, *,
                      fuzzy_cutoff: float | None = 90.0) -> tuple[int, int] | None:
    """``"Take the knife"`` or ``("take", "knife")`` -> (verb id, noun id); None when either part is unmappable.

    The verb is the longest leading word sequence (up to 3 words, first word also tried in base form:
    ``takes``/``taking`` -> ``take``) that is a verb name or synonym, case-insensitive; failing that, the best
    fuzzy match among those prefixes. The remaining words, without leading articles/prepositions, give the noun:
    the longest exact leading sequence, then fuzzy.
    """
    if isinstance(phrase, tuple):
        v = vocab.verbs.lookup(phrase[0].strip(), fuzzy_cutoff=fuzzy_cutoff)
        n = vocab.nouns.lookup(phrase[1].strip(), fuzzy_cutoff=fuzzy_cutoff)
        return None if v is None or n is None else (v, n)
    words = normalize_phrase(phrase).split()
    while len(words) > 2 and words[0] in _LEADING_CONNECTIVES:   # "then cut onion", "and finally wash pan"
        words = words[1:]
    if len(words) < 2:
        return None
    hit = _match_verb_prefix(words, vocab.verbs.normalized_forms())
    if hit is None and fuzzy_cutoff is not None:
        # no exact verb prefix: the best fuzzy match among the 1..3-word prefixes (leaving a noun word)
        scored = [(m[1], m[0], n) for n in range(1, min(3, len(words) - 1) + 1)
                  if (m := vocab.verbs.fuzzy(" ".join(words[:n]), fuzzy_cutoff)) is not None]
        if scored:
            _, v, n = max(scored)
            hit = (v, n)
    if hit is None:
        return None
    verb, used = hit
    noun = _match_noun(words[used:], vocab.nouns, fuzzy_cutoff)
    return None if noun is None else (verb, noun)


def map_sequence(output: str | Sequence[str] | Sequence[tuple[str, str]], vocab: ActionVocab, z: int = 20, *,
                 pad: str = "repeat_last", fill: tuple[int, int] = (0, 0),
                 fuzzy_cutoff: float | None = 90.0) -> MappedSequence:
    """Turn noisy LLM output into Z (verb, noun) id pairs.

    ``output`` is raw text (``"1. take knife\\n2. cut onion"`` or ``"take knife, cut onion"``), a list of phrases,
    or a list of (verb text, noun text) pairs. Unmappable phrases are dropped (and listed in ``dropped``). The
    result is truncated to ``z`` or padded: ``pad="repeat_last"`` repeats the last mapped action (AntGPT, PALM),
    ``pad="fill"`` appends ``fill``; with nothing mapped both use ``fill``. AntGPT's further fallbacks
    (frequency-weighted random words, copying the nearest training sequence when nothing parses) are left to
    the caller, which can test ``num_mapped``.
    """
    if pad not in ("repeat_last", "fill"):
        raise ValueError(f"pad must be 'repeat_last' or 'fill', got {pad!r}")
    if isinstance(output, str):
        phrases: list[str | tuple[str, str]] = list(split_action_phrases(output))
    else:
        phrases = []
        for item in output:
            if isinstance(item, (tuple, list)) and len(item) == 2:
                phrases.append((str(item[0]), str(item[1])))
            else:
                phrases.extend(split_action_phrases(str(item)))
    pairs, dropped = [], []
    for p in phrases:
        m = map_action_phrase(p, vocab, fuzzy_cutoff=fuzzy_cutoff)
        if m is None:
            dropped.append(p if isinstance(p, str) else " ".join(p))
        else:
            pairs.append(m)
    num_mapped = len(pairs)
    pairs = pairs[:z]
    padded = z - len(pairs)
    if padded > 0:
        filler = pairs[-1] if (pairs and pad == "repeat_last") else tuple(fill)
        pairs = pairs + [filler] * padded
    return MappedSequence([(int(v), int(n)) for v, n in pairs], num_mapped, dropped, padded)


__all__ = [
    "ActionVocab", "AnnotationError", "Ego4DAction", "LTAWindow", "LmdbFeatures", "MappedSequence", "NpyFeatures",
    "RulstmFeatureDataset", "RulstmRow", "Segment", "VerbSetSample", "Vocabulary", "check_ego4d_submission",
    "ego4d_lta_windows", "load_egtea_vocab", "load_ego4d_taxonomy", "load_epic_classes", "load_epic_vocab",
    "load_rulstm_actions", "map_action_phrase", "map_sequence", "normalize_phrase", "open_features",
    "read_class_ids", "read_egtea_action_labels", "read_ego4d_lta", "read_epic55_action_labels", "read_lta_segments_json", "read_rulstm_csv",
    "rulstm_frame_key", "rulstm_past_frames", "split_action_phrases", "verb_set_samples",
    "write_ego4d_submission",
]
