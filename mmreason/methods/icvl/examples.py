"""In-context example selection for ICVL: joint visual + textual similarity over a bank of training windows.

The paper (arXiv 2505.01713, abstract) selects examples "by visual similarity and textual similarity jointly";
its formula was not retrievable, so the score here is the reconstruction of specs/anticipation_tal.md §2.3 step 5:

    s_j = λ · cos(v̄_q, v̄_j) + (1 − λ) · cos(t_q, t_j)          (λ = ``model.visual_weight``)

with v̄ the mean-pooled visual tokens and t a sentence embedding of the observed-action text (plus the intention,
``model.example_text``). Both spaces are L2-normalised and concatenated, ``b_j = [v̂_j, t̂_j]``, and the query is
weighted, ``q = [λ v̂_q, (1 − λ) t̂_q]``, so one FAISS inner-product search returns exactly ``s_j`` and λ can
change without rebuilding the index. Optional MMR (PALM) re-ranks a candidate pool with the same joint similarity
between bank items: ``argmax_j μ·s_j − (1 − μ)·max_{i∈S} sim(j, i)``.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mmreason.retrieval import VectorIndex, joint_scores, mmr


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class BagOfWordsEmbedder:
    """A hashed bag of words (each word -> one of ``dim`` signed buckets by SHA-1), L2-normalised.

    Deterministic and model-free: the text similarity of tests and tiny runs. It is not a sentence encoder; the
    default for real runs is the packaged all-MiniLM-L6-v2 (``model.text_embedder = minilm``).
    """

    def __init__(self, dim: int = 256):
        self.dim = dim

    @property
    def identity(self) -> str:
        return f"bag_of_words-{self.dim}"

    def embed(self, texts: Sequence[str], batch_size: int | None = None, normalize: bool = True) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int.from_bytes(hashlib.sha1(word.encode()).digest()[:4], "little")
                out[i, h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0
        return _unit(out) if normalize else out


def make_text_embedder(name: str):
    """``"minilm"`` -> the packaged ``TextEmbedder``; ``"bag_of_words"`` -> :class:`BagOfWordsEmbedder`."""
    if name == "bag_of_words":
        return BagOfWordsEmbedder()
    if name == "minilm":
        from mmreason.text import TextEmbedder

        return TextEmbedder()
    raise ValueError(f"unknown text embedder {name!r}; use 'minilm' or 'bag_of_words'")


@dataclass
class Example:
    """One bank entry as the prompt shows it, with its joint score for the query."""

    index: int
    key: str
    observed: list[str]
    future: list[str]
    score: float

    def to_dict(self) -> dict:
        return {"key": self.key, "observed": self.observed, "future": self.future, "score": round(self.score, 6)}


@dataclass
class ExampleBank:
    """Training windows as in-context examples: ``visual [M, D]`` (mean-pooled), ``text [M, E]`` embeddings,
    the observed/future action texts and the clip of each (to keep a query's own clip out)."""

    keys: list[str]
    clips: list[str]
    observed: list[list[str]]
    future: list[list[str]]
    visual: np.ndarray
    text: np.ndarray
    index: VectorIndex = field(init=False, repr=False)

    def __post_init__(self):
        if not (len(self.keys) == len(self.clips) == len(self.observed) == len(self.future)
                == len(self.visual) == len(self.text)):
            raise ValueError("ExampleBank: keys, clips, observed, future, visual and text must have one row per window")
        self.visual, self.text = _unit(self.visual), _unit(self.text)
        self.index = VectorIndex(self.visual.shape[1] + self.text.shape[1], kind="flat", metric="ip", use_gpu=False)
        if len(self.keys):
            self.index.add(np.concatenate([self.visual, self.text], axis=1))

    def __len__(self) -> int:
        return len(self.keys)

    def scores(self, visual_query: np.ndarray, text_query: np.ndarray, visual_weight: float) -> np.ndarray:
        """Exact joint scores ``[Q, M]`` (the formula, through ``mmreason.retrieval.joint_scores``)."""
        return joint_scores({"visual": (visual_query, self.visual), "text": (text_query, self.text)},
                            {"visual": visual_weight, "text": 1.0 - visual_weight})

    def select(self, visual_query: np.ndarray, text_query: np.ndarray, k: int, *, visual_weight: float = 0.5,
               exclude_clips: Sequence[str | None] | None = None, use_mmr: bool = False, mmr_lambda: float = 0.5,
               mmr_pool: int = 4) -> list[list[Example]]:
        """The ``k`` examples of each query ``[Q, D]`` / ``[Q, E]``, best first (selection order under MMR)."""
        vq, tq = _unit(np.atleast_2d(visual_query)), _unit(np.atleast_2d(text_query))
        if k <= 0 or len(self) == 0:
            return [[] for _ in range(len(vq))]
        query = np.concatenate([visual_weight * vq, (1.0 - visual_weight) * tq], axis=1)   # [Q, D + E]
        excluded = list(exclude_clips) if exclude_clips is not None else [None] * len(vq)
        # enough candidates that the pool survives dropping the query's own clip
        same_clip = max((self.clips.count(c) for c in set(excluded) if c is not None), default=0)
        want = k * (mmr_pool if use_mmr else 1)
        scores, ids = self.index.search(query, min(len(self), want + same_clip))
        out = []
        for row in range(len(vq)):
            cand = [(int(i), float(s)) for i, s in zip(ids[row], scores[row])
                    if i >= 0 and (excluded[row] is None or self.clips[int(i)] != excluded[row])][:want]
            if use_mmr and len(cand) > 1:
                pool = np.array([i for i, _ in cand])
                sim = joint_scores({"visual": (self.visual[pool], self.visual[pool]),
                                    "text": (self.text[pool], self.text[pool])},
                                   {"visual": visual_weight, "text": 1.0 - visual_weight})   # [P, P] item-item
                order = mmr(np.array([s for _, s in cand]), sim, k, mmr_lambda)
                cand = [cand[j] for j in order]
            out.append([Example(i, self.keys[i], self.observed[i], self.future[i], s) for i, s in cand[:k]])
        return out


def query_text(observed: Sequence[str], intention: str, example_text: str) -> str:
    """The text embedded for the textual similarity (``model.example_text``)."""
    text = "Observed actions: " + ", ".join(observed) + "."
    if example_text == "observed+intention" and intention:
        text += " Intention: " + intention
    return text
