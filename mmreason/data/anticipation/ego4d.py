"""Ego4D long-term anticipation: taxonomy, ``fho_lta_*.json`` windows, the ``outputs.json`` submission, and the
recognised observed actions an action recogniser writes (:func:`read_recognized_actions`)."""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mmreason.data.anticipation.vocab import (
    ActionVocab,
    AnnotationError,
    Vocabulary,
    _require_file,
)
from mmreason.utils.io import atomic_write_json, read_json


def load_ego4d_taxonomy(path: str | Path) -> ActionVocab:
    """Read ``fho_lta_taxonomy.json`` (``{"verbs": [...], "nouns": [...]}``); actions are dense verb x noun."""
    path = _require_file(path, "Ego4D taxonomy (fho_lta_taxonomy.json)")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("verbs"), list) or not isinstance(data.get("nouns"), list):
        raise AnnotationError(f"{path}: an Ego4D taxonomy needs 'verbs' and 'nouns' lists (index = class id)")
    return ActionVocab(Vocabulary.from_names(data["verbs"], "verb"), Vocabulary.from_names(data["nouns"], "noun"))


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


# ================================================================================================ recogniser output

_SEGMENT_KEY = re.compile(r"^(.+)_(\d+)$")


def read_recognized_actions(path: str | Path, num_verbs: int | None = None,
                            num_nouns: int | None = None) -> dict[str, tuple[int, int]]:
    """Read recognised observed actions -> ``{"<clip_uid>_<action_idx>": (verb id, noun id)}`` (top-1 per segment).

    The file is what the recognisers of the LLM-based LTA works write (JSON object keyed by
    ``"<clip_uid>_<action_idx>"``, the Ego4D segment key); each value is ``{"verb": V, "noun": N}`` where V (and N) is
      * an int: the top-1 class of that segment;
      * a list of ints: K ranked candidates of that segment (the first is the top-1);
      * a list of lists of ints: K candidate sequences over the L segments *ending* at ``action_idx`` (the
        Ego4D-forecasting recognition task's output, which PALM reads: ``seq[j]`` is segment
        ``action_idx - L + 1 + j``);
      * a list of floats: one score per class (AntGPT's recogniser logits): the argmax.
    Every entry votes for the segments it covers (an int, the first candidate or the argmax: one vote; a window:
    one vote per candidate and position); a segment's action is its most voted verb and noun, ties to the smaller
    id (PALM aggregates windows by majority the same way). Ids outside ``num_verbs``/``num_nouns`` are an error.
    """
    path = _require_file(path, "recognised observed actions (predictions JSON)")
    data = read_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: recognised actions are a JSON object keyed by '<clip_uid>_<action_idx>'")
    votes: dict[str, dict[str, Counter]] = defaultdict(lambda: {"verb": Counter(), "noun": Counter()})
    for key, entry in data.items():
        m = _SEGMENT_KEY.match(str(key))
        if m is None or not isinstance(entry, dict) or "verb" not in entry or "noun" not in entry:
            raise AnnotationError(f"{path}: entry {key!r} must be keyed '<clip_uid>_<action_idx>' and hold 'verb' "
                                  "and 'noun'")
        clip, idx = m.group(1), int(m.group(2))
        for head, size in (("verb", num_verbs), ("noun", num_nouns)):
            for offset, cls in _segment_votes(entry[head], size, path, key, head):
                votes[f"{clip}_{idx - offset}"][head][cls] += 1
    return {k: (_top(v["verb"]), _top(v["noun"])) for k, v in votes.items()}


def _segment_votes(value: Any, size: int | None, path: Path, key: str, head: str) -> list[tuple[int, int]]:
    """``[(segments before action_idx, class id)]`` for one head of one entry."""
    def check(c: Any) -> int:
        if isinstance(c, bool) or not isinstance(c, int) or c < 0 or (size is not None and c >= size):
            raise AnnotationError(f"{path}: entry {key!r} {head} {c!r} is not a class id in 0..{(size or 0) - 1}"
                                  if size is not None else f"{path}: entry {key!r} {head} {c!r} is not a class id")
        return c

    if isinstance(value, int) and not isinstance(value, bool):
        return [(0, check(value))]
    if isinstance(value, list) and value and all(isinstance(x, list) for x in value):
        length = len(value[0])
        if not length or any(len(seq) != length for seq in value):
            raise AnnotationError(f"{path}: entry {key!r} {head}: the K candidate sequences must share one length")
        return [(length - 1 - j, check(c)) for seq in value for j, c in enumerate(seq)]
    if isinstance(value, list) and value and any(isinstance(x, float) for x in value):
        if size is not None and len(value) != size:
            raise AnnotationError(f"{path}: entry {key!r} {head} holds {len(value)} scores for {size} classes")
        return [(0, int(np.argmax(np.asarray(value, dtype=np.float64))))]
    if isinstance(value, list) and value:
        return [(0, check(value[0]))]
    raise AnnotationError(f"{path}: entry {key!r} {head} must be an id, ranked ids, K id sequences or class scores")


def _top(counter: Counter) -> int:
    return min(counter, key=lambda c: (-counter[c], c))
