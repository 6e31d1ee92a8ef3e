"""ICVL behavioural intentions (arXiv 2505.01713, Sec. 3 step 1 "intention inference").

A VLM reads frames sampled uniformly from an observed clip (optionally with the clip's observed action labels)
and writes, in one sentence, what the actor is trying to accomplish. The paper names neither the VLM nor its
prompt; ``prompts/intentions/`` holds ours and the frame count is an option (``num_frames``, default 8).
Answers are cached per clip id through the response cache (the frames' content hashes are part of the key).

Items are clips: ``{"id": clip id, "video": path, "start_s": float, "end_s": float, "observed": [labels]}``
(``start_s``/``end_s`` optional: the whole video). Record: ``{"id", "video", "observed", "intention",
"intention_source"}``; ``intention_source`` is ``"vlm"`` (the model saw the frames) or ``"text_only"`` (a
text-only model answered from the observed actions alone; pass ``options={"intention_source": "text_only"}`` and
``num_frames=0``), and the manifest's ``options`` repeat it.

Frames stream: :class:`ClipFrames` checks every clip before anything is generated (:func:`check_clip_items`),
then decodes each clip's frames when its request is built and keeps only a few clips, so a whole split never
sits in memory at once.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from mmreason.assets.spec import AssetSpec, Stage
from mmreason.llm.parsing import ParseError, ends_mid_sentence


def observed_clause(observed: list[str]) -> str:
    if not observed:
        return ""
    return " The actions seen so far are: " + ", ".join(observed) + "."


def _span(item: dict, duration: float) -> tuple[float, float]:
    start = float(item.get("start_s") or 0.0)
    end = float(item["end_s"]) if item.get("end_s") is not None else duration
    return start, end


def sample_clip_frames(item: dict, num_frames: int = 8) -> np.ndarray:
    """``num_frames`` frames at uniform times over ``[start_s, end_s]`` of ``item["video"]`` -> uint8 [T, H, W, 3]."""
    from mmreason.video import probe, read_frames_at

    info = probe(item["video"])
    start, end = _span(item, info.duration)
    if end <= start:
        raise ValueError(f"clip {item['id']!r}: end_s ({end}) must be after start_s ({start})")
    # centres of num_frames equal bins, so the first and last frames are inside the clip
    times = start + (np.arange(num_frames) + 0.5) * (end - start) / num_frames
    return read_frames_at(item["video"], times.tolist())


def check_clip_items(items: Sequence[dict], num_frames: int) -> None:
    """Before any model loads: every clip's video opens, ``[start_s, end_s]`` lies inside it and holds at least
    ``num_frames`` frames (fewer would show the VLM repeated frames). One error lists every bad clip."""
    if num_frames <= 0:
        return
    from mmreason.video import VideoDecodeError, frame_timestamps, probe

    problems = []
    for it in items:
        try:
            info, stamps = probe(it["video"]), frame_timestamps(it["video"])
        except VideoDecodeError as e:
            problems.append(f"clip {it['id']!r}: {e}")
            continue
        start, end = _span(it, info.duration)
        step = 1.0 / info.fps if info.fps > 0 else 0.0
        inside = int(np.count_nonzero((stamps >= start - 1e-6) & (stamps < end + 1e-6)))
        if end <= start:
            problems.append(f"clip {it['id']!r}: end_s ({end}) must be after start_s ({start})")
        elif end > info.duration + step + 1e-6:
            problems.append(f"clip {it['id']!r}: ends at {end:.2f} s but {it['video']} lasts {info.duration:.2f} s")
        elif inside < num_frames:
            problems.append(f"clip {it['id']!r}: {it['video']} has {inside} frames between {start:.2f} s and "
                            f"{end:.2f} s, fewer than the {num_frames} frames shown to the VLM")
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ValueError(f"{len(problems)} of {len(items)} intention clips cannot be shown to the VLM (nothing was "
                         "generated):\n  " + "\n  ".join(problems[:10]) + more)


class ClipFrames:
    """The frames of clip items, decoded when a request first asks for them; at most ``keep`` clips are held.

    Read like a dict: ``frames.get(item_id, ())`` -> tuple of ``[H, W, 3]`` uint8 frames (``()`` when
    ``num_frames`` is 0: a text-only model is shown no frames). Every clip is checked when this is built.
    ``decoded`` counts decodes (a clip evicted and asked for again is decoded again).
    """

    def __init__(self, items: Sequence[dict], num_frames: int, keep: int = 8):
        check_clip_items(items, num_frames)
        self.items = {str(it["id"]): it for it in items}
        self.num_frames, self.keep, self.decoded = num_frames, keep, 0
        self._held: OrderedDict[str, tuple] = OrderedDict()

    def get(self, item_id: str, default: Any = ()) -> tuple:
        if item_id not in self.items:
            return default
        if item_id in self._held:
            self._held.move_to_end(item_id)
            return self._held[item_id]
        frames = tuple(sample_clip_frames(self.items[item_id], self.num_frames)) if self.num_frames > 0 else ()
        self.decoded += 1
        self._held[item_id] = frames
        while len(self._held) > self.keep:
            self._held.popitem(last=False)
        return frames


def parse_intention(text: str, variables: dict) -> str:
    """One sentence. Completion answers start with the priming "Answer: The person intends to"."""
    text = re.sub(r"^Answer:\s*", "", text.strip())
    sentence = re.split(r"(?<=[.!?])\s|\n", text.strip(), maxsplit=1)[0].strip().strip("\"'")
    content = re.sub(r"^the person intends to\b", "", sentence, flags=re.IGNORECASE).strip(" .")
    if len(content.split()) < 2 or len(sentence.split()) < 3:
        raise ParseError(f"intention too short: {sentence!r}")
    if ends_mid_sentence(sentence):
        raise ParseError(f"intention ends mid-sentence: {sentence!r}")
    return sentence if sentence[-1] in ".!?" else sentence + "."


def _collect(record: dict, results: list) -> None:
    (_, intention), = results
    record["intention"] = intention


INTENTIONS = AssetSpec(
    name="intentions",
    version=1,
    description="ICVL: a VLM's one-sentence intention for each observed clip (cached per clip id)",
    stages=(Stage("intention", parse=parse_intention, collect=_collect, temperature=0.0, max_tokens=48,
                  stop_completion=("\n",), with_images=True),),
    items="clips",
    embed_texts=lambda record: [record["intention"]],
    variables=lambda options: {"intention_source": options.get("intention_source", "vlm")},
)
