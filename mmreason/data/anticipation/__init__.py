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

One module per dataset family: :mod:`.vocab` (shared classes), :mod:`.ego4d`, :mod:`.epic` (EK-55 / EGTEA),
:mod:`.rulstm`, and :mod:`.text_mapping` (LLM text -> ids).
"""
from __future__ import annotations

from mmreason.data.anticipation.vocab import (ActionVocab, AnnotationError, Vocabulary, normalize_phrase,
                                              read_class_ids)
from mmreason.data.anticipation.ego4d import (Ego4DAction, LTAWindow, check_ego4d_submission, ego4d_lta_windows,
                                              load_ego4d_taxonomy, read_ego4d_lta, read_recognized_actions,
                                              write_ego4d_submission)
from mmreason.data.anticipation.epic import (Segment, VerbSetSample, load_egtea_idx_vocab, load_egtea_vocab,
                                             load_epic_classes, load_epic_vocab, load_rulstm_actions,
                                             read_egotopo_split, read_egtea_action_labels, read_epic55_action_labels,
                                             read_lta_segments_json, verb_set_samples)
from mmreason.data.anticipation.rulstm import (LmdbFeatures, NpyFeatures, RulstmFeatureDataset, RulstmRow,
                                               open_features, read_rulstm_csv, rulstm_frame_key,
                                               rulstm_past_frames)
from mmreason.data.anticipation.text_mapping import (MappedSequence, map_action_phrase, map_sequence,
                                                     split_action_phrases)

__all__ = [
    "ActionVocab", "AnnotationError", "Ego4DAction", "LTAWindow", "LmdbFeatures", "MappedSequence", "NpyFeatures",
    "RulstmFeatureDataset", "RulstmRow", "Segment", "VerbSetSample", "Vocabulary", "check_ego4d_submission",
    "ego4d_lta_windows", "load_ego4d_taxonomy", "load_egtea_idx_vocab", "load_egtea_vocab", "load_epic_classes",
    "load_epic_vocab", "load_rulstm_actions", "map_action_phrase", "map_sequence", "normalize_phrase",
    "open_features", "read_class_ids", "read_ego4d_lta", "read_egotopo_split", "read_egtea_action_labels",
    "read_epic55_action_labels", "read_lta_segments_json", "read_recognized_actions", "read_rulstm_csv",
    "rulstm_frame_key", "rulstm_past_frames", "split_action_phrases", "verb_set_samples", "write_ego4d_submission",
]
