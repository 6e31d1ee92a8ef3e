"""ICVL behavioural intentions (arXiv 2505.01713, Sec. 3 step 1 "intention inference").

A VLM reads frames sampled uniformly from an observed clip (optionally with the clip's observed action labels)
and writes, in one sentence, what the actor is trying to accomplish. The paper names neither the VLM nor its
prompt; ``prompts/intentions/`` holds ours and the frame count is an option (``num_frames``, default 8).
Answers are cached per clip id through the response cache (the frames' content hashes are part of the key).

Items are clips: ``{"id": clip id, "video": path, "start_s": float, "end_s": float, "observed": [labels]}``
(``start_s``/``end_s`` optional: the whole video). Record: ``{"id", "video", "observed", "intention"}``.
"""
from __future__ import annotations

import re

import numpy as np

from mmreason.assets.spec import AssetSpec, Stage
from mmreason.llm.parsing import ParseError


def observed_clause(observed: list[str]) -> str:
    if not observed:
        return ""
    return " The actions seen so far are: " + ", ".join(observed) + "."


def sample_clip_frames(item: dict, num_frames: int = 8) -> np.ndarray:
    """``num_frames`` frames at uniform times over ``[start_s, end_s]`` of ``item["video"]`` -> uint8 [T, H, W, 3]."""
    from mmreason.video import probe, read_frames_at

    info = probe(item["video"])
    start = float(item.get("start_s") or 0.0)
    end = float(item.get("end_s") or info.duration)
    if end <= start:
        raise ValueError(f"clip {item['id']!r}: end_s ({end}) must be after start_s ({start})")
    # centres of num_frames equal bins, so the first and last frames are inside the clip
    times = start + (np.arange(num_frames) + 0.5) * (end - start) / num_frames
    return read_frames_at(item["video"], times.tolist())


def parse_intention(text: str, variables: dict) -> str:
    """One sentence. Completion answers start with the priming "Answer: The person intends to"."""
    text = re.sub(r"^Answer:\s*", "", text.strip())
    sentence = re.split(r"(?<=[.!?])\s|\n", text.strip(), maxsplit=1)[0].strip().strip("\"'")
    content = re.sub(r"^the person intends to\b", "", sentence, flags=re.IGNORECASE).strip(" .")
    if len(content.split()) < 2 or len(sentence.split()) < 3:
        raise ParseError(f"intention too short: {sentence!r}")
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
    variables=lambda options: {},
)
