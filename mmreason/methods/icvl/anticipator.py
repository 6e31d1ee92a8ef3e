"""Interactive long-term action anticipation with a trained (or configured) ICVL model.

    >>> from mmreason import Anticipator                                              # doctest: +SKIP
    >>> ant = Anticipator.from_pretrained("runs/icvl_tiny")         # run folder (newest checkpoint) or config
    >>> p = ant.predict(video="kitchen.mp4", observed=["take knife", "cut onion", ...], k=5, z=20)
    >>> p.sequences[0].actions[:2], p.intention, p.examples[0].key
    >>> p.to_dict()                                                  # JSON-ready

Everything heavy is loaded once in :meth:`Anticipator.from_pretrained`: the model (LLM + LoRA + fusion +
projector), the vocabulary, the example bank with its FAISS index, the text embedder, the intention backend and
the frame encoder. Per-clip work (frame decoding and encoding, the intention, the query-text embedding) is kept
in an in-memory LRU keyed by video path + modification time + size, or by the SHA-256 of a frames/features
array, so a repeated query on the same clip only re-runs retrieval and generation.

Frame encoder (``frame_encoder="pixels"``, the only one here): each frame is area-downsampled to 16 x 16 RGB
(768 numbers), centred, and multiplied by a fixed seeded Gaussian matrix to ``model.visual_dim`` (a random
projection). It is deterministic and needs no weights, which makes video queries possible on CPU and in tests; it
is NOT the CLIP ViT-L/14 encoder the features of a real Ego4D run come from, so for such a run pass ``features=``
computed with that encoder (or a ``frame_encoder`` callable ``frames uint8 [T, H, W, 3] -> [T, D]``).

Intentions: an ``intention=`` argument wins; otherwise, for a video, the intention asset engine generates it
(``mmreason.assets.intentions``, answers in the response cache ``data.llm_cache_dir``, the
one-record asset files in ``~/.cache/mmreason/anticipator_intentions``) with the run's
``data.intention_backend``/``data.intention_model`` or the ``intention_llm`` given to ``from_pretrained``; a text-only
model sees the observed actions without the frames. Frames or features without an intention get none.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mmreason.data.anticipation import map_action_phrase
from mmreason.methods.icvl.examples import Example, query_text
from mmreason.registry import did_you_mean


class AnticipationInputError(ValueError):
    """A query's input is unusable; the message names the input and what to do."""


# ================================================================================================ results

@dataclass
class PredictedSequence:
    """One candidate future: Z (verb, noun) pairs as ids and text, with its mean token log-probability."""

    verb_ids: list[int]
    noun_ids: list[int]
    actions: list[str]
    score: float
    raw_text: str = ""

    def to_dict(self) -> dict:
        return {"actions": self.actions, "verb_ids": self.verb_ids, "noun_ids": self.noun_ids,
                "score": round(self.score, 6), "raw_text": self.raw_text}


@dataclass
class Prediction:
    """The answer to one query: K sequences (best first), the intention, the in-context examples, timings."""

    sequences: list[PredictedSequence]
    observed: list[str]
    intention: str
    examples: list[Example]
    timings: dict = field(default_factory=dict)
    clip_cached: bool = False

    def to_dict(self) -> dict:
        return {"observed": self.observed, "intention": self.intention,
                "sequences": [s.to_dict() for s in self.sequences],
                "examples": [e.to_dict() for e in self.examples],
                "timings_s": {k: round(v, 6) for k, v in self.timings.items()}, "clip_cached": self.clip_cached}


# ================================================================================================ frame encoder

class PixelFrameEncoder:
    """Frames ``uint8 [T, H, W, 3]`` -> ``[T, D]``: 16 x 16 area-downsampled RGB, centred, times a fixed seeded
    Gaussian projection ``[768, D] / sqrt(768)``. Deterministic, weight-free; ``calls`` counts encode calls."""

    def __init__(self, dim: int, size: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.size = size
        self.projection = torch.randn(size * size * 3, dim, generator=g) / (size * size * 3) ** 0.5
        self.calls = 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        self.calls += 1
        x = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0   # [T, 3, H, W]
        x = torch.nn.functional.adaptive_avg_pool2d(x, self.size).flatten(1) - 0.5              # [T, 768]
        return (x @ self.projection).numpy()                                                      # [T, D]


def split_evenly(num: int, parts: int) -> list[np.ndarray]:
    """``num`` frame indices into ``parts`` contiguous, nearly equal chunks (each non-empty when num >= parts)."""
    return [c for c in np.array_split(np.arange(num), parts)]


# ================================================================================================ the API

class Anticipator:
    """Answers "what will this person do next?" for a clip and its observed actions. Build it with
    :meth:`from_pretrained`; see the module docstring."""

    def __init__(self, cfg, model, bank, embedder, *, frame_encoder: Callable[[np.ndarray], np.ndarray],
                 intention_llm: Any = None, min_observed: int | None = None, frames_per_segment: int = 4,
                 cache_size: int = 64, trained_from: str | None = None):
        self.cfg, self.model, self.bank, self.embedder = cfg, model, bank, embedder
        self.vocab = model.vocab
        self.frame_encoder = frame_encoder
        self.intention_llm = intention_llm
        self.min_observed = cfg.data.num_observed if min_observed is None else min_observed
        self.frames_per_segment = frames_per_segment
        self.cache_size = cache_size
        self.trained_from = trained_from
        self._clips: OrderedDict[tuple, dict] = OrderedDict()      # per-clip LRU
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()  # query-text embeddings
        self.model.eval()

    @classmethod
    def from_pretrained(cls, run_or_config: str | os.PathLike, overrides: Sequence[str] = (), *,
                        intention_llm: Any = None, frame_encoder: Callable | None = None,
                        min_observed: int | None = None, frames_per_segment: int = 4, cache_size: int = 64,
                        device: str | None = None) -> "Anticipator":
        """Load once: a run folder (config + newest checkpoint), a saved ``config.json``, or an ICVL config name/YAML
        (untrained fusion/projector/LoRA, i.e. the base LLM with zero-initialised adapters)."""
        from mmreason.experiment import load_experiment
        from mmreason.methods.icvl import build_model
        from mmreason.methods.icvl.data import example_bank, text_embedder

        method, cfg = load_experiment(run_or_config, overrides)
        if method.name != "icvl":
            raise ValueError(f"{run_or_config}: the Anticipator needs an ICVL run or config, got method {method.name!r}")
        model = build_model(cfg)
        trained_from = None
        path = Path(str(run_or_config))
        if path.is_dir() and ((path / "checkpoints").is_dir() or (path / "model.safetensors").is_file()):
            from mmreason.engine import load_checkpoint

            trained_from = str(load_checkpoint(model, path)["path"])
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
        encoder = frame_encoder or PixelFrameEncoder(cfg.model.visual_dim)
        return cls(cfg, model, example_bank(cfg), text_embedder(cfg.model.text_embedder), frame_encoder=encoder,
                   intention_llm=intention_llm, min_observed=min_observed, frames_per_segment=frames_per_segment,
                   cache_size=cache_size, trained_from=trained_from)

    # ------------------------------------------------------------------------------------------ inputs
    def canonical_observed(self, observed: Sequence[str]) -> list[str]:
        """Map each observed phrase onto the vocabulary (``"Take the knife"`` -> ``"take knife"``) or fail naming it."""
        if isinstance(observed, str):
            observed = [a.strip() for a in observed.split(",") if a.strip()]
        observed = list(observed)
        if len(observed) < self.min_observed:
            raise AnticipationInputError(f"observed: {len(observed)} actions given, this model needs at least "
                                         f"{self.min_observed} (the actions seen so far, oldest first)")
        out = []
        for phrase in observed:
            pair = map_action_phrase(str(phrase), self.vocab)
            if pair is None:
                raise AnticipationInputError(f"observed action {phrase!r} is not in the vocabulary"
                                             f"{self._suggest(str(phrase))} (write it as 'verb noun')")
            out.append(f"{self.vocab.verbs.text(pair[0])} {self.vocab.nouns.text(pair[1])}")
        return out

    def _suggest(self, phrase: str) -> str:
        words = phrase.lower().split()
        verbs = did_you_mean(words[0], list(self.vocab.verbs.display)) if words else ""
        nouns = did_you_mean(" ".join(words[1:]), list(self.vocab.nouns.display)) if len(words) > 1 else ""
        parts = [p.removeprefix("; did you mean ").rstrip("?") for p in (verbs, nouns) if p]
        return f"; did you mean {' / '.join(parts)}?" if parts else ""

    def _clip_key(self, video, frames, features, n: int) -> tuple:
        if video is not None:
            path = Path(video)
            if not path.is_file():
                raise FileNotFoundError(f"video {path}: file not found")
            st = path.stat()
            return ("video", str(path.resolve()), st.st_mtime_ns, st.st_size, n)
        array = frames if frames is not None else features
        array = np.ascontiguousarray(array)
        digest = hashlib.sha256(array.tobytes()).hexdigest()
        return ("frames" if frames is not None else "features", digest, array.shape, str(array.dtype), n)

    def _clip_entry(self, key: tuple) -> tuple[dict, bool]:
        if key in self._clips:
            self._clips.move_to_end(key)
            return self._clips[key], True
        entry: dict = {"intentions": {}}
        self._clips[key] = entry
        while len(self._clips) > self.cache_size:
            self._clips.popitem(last=False)
        return entry, False

    def _visual(self, video, frames, features, n: int) -> np.ndarray:
        """``[n, D]`` visual tokens, one per observed segment."""
        d = self.cfg.model.visual_dim
        if features is not None:
            arr = np.asarray(features, dtype=np.float32)
            if arr.ndim == 3:
                arr = arr.mean(axis=1)
            if arr.ndim != 2 or arr.shape[1] != d:
                raise AnticipationInputError(f"features: expected [num_segments, {d}] (or [num_segments, T, {d}]), "
                                             f"got shape {np.shape(features)}")
            return arr
        if video is not None:
            from mmreason.video import probe, read_frames_at

            info = probe(video)
            # frames_per_segment frames at the centres of equal sub-bins of each of the n equal segments
            times = (np.arange(n * self.frames_per_segment) + 0.5) * info.duration / (n * self.frames_per_segment)
            frames = read_frames_at(video, times.tolist())
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise AnticipationInputError(f"frames: expected uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
        if len(frames) < n:
            raise AnticipationInputError(f"frames: {len(frames)} frames cannot cover {n} observed segments")
        encoded = np.asarray(self.frame_encoder(frames), dtype=np.float32)   # [T, D]
        if encoded.shape != (len(frames), d):
            raise AnticipationInputError(f"frame encoder returned {encoded.shape}, expected [{len(frames)}, {d}]")
        return np.stack([encoded[chunk].mean(axis=0) for chunk in split_evenly(len(frames), n)])

    def _intention(self, video: str | None, observed: list[str], key: tuple) -> str:
        if video is None or self.cfg.data.intentions == "none":
            return ""
        from mmreason.methods.icvl.data import generate_intentions

        d = self.cfg.data
        clip_id = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        if self.intention_llm is None:   # built on first use, then kept (loading a model takes seconds)
            from mmreason.methods.icvl.data import intention_llm

            self.intention_llm = intention_llm(d.intention_backend, d.intention_model) or d.intention_backend
        backend = self.intention_llm
        from mmreason.llm.embedded import mmreason_cache_dir

        # the answers live in the response cache; the one-record asset files of single queries are scratch
        scratch = mmreason_cache_dir() / "anticipator_intentions"
        table = generate_intentions([{"id": clip_id, "video": str(video), "observed": observed}], clip_id,
                                    backend, d.intention_model, str(scratch), d.llm_cache_dir)
        return table[clip_id]

    def _embed_text(self, text: str) -> np.ndarray:
        if text in self._texts:
            self._texts.move_to_end(text)
            return self._texts[text]
        vec = np.asarray(self.embedder.embed([text]))[0]
        self._texts[text] = vec
        while len(self._texts) > 4 * self.cache_size:
            self._texts.popitem(last=False)
        return vec

    # ------------------------------------------------------------------------------------------ query
    def predict(self, *, observed: Sequence[str], video: str | os.PathLike | None = None, frames: Any = None,
                features: Any = None, intention: str | None = None, k: int = 5, z: int = 20, seed: int = 0,
                use_cache: bool = True) -> Prediction:
        """K candidate sequences of the next Z actions after ``observed`` on one clip.

        Exactly one of ``video`` (a file; split into ``len(observed)`` equal segments), ``frames`` (uint8
        ``[T, H, W, 3]``, split likewise) or ``features`` (``[len(observed), D]`` visual features) is the clip.
        ``use_cache=False`` recomputes the per-clip work (for benchmarking).
        """
        given = [name for name, v in (("video", video), ("frames", frames), ("features", features)) if v is not None]
        if len(given) != 1:
            raise AnticipationInputError("give exactly one of video=, frames= or features= "
                                         f"(got {', '.join(given) or 'none'})")
        if k < 1 or z < 1:
            raise AnticipationInputError(f"k and z must be >= 1, got k={k}, z={z}")
        timings: dict[str, float] = {}
        start = time.perf_counter()
        observed = self.canonical_observed(observed)
        video = str(video) if video is not None else None
        key = self._clip_key(video, frames, features, len(observed))
        if not use_cache:
            self._clips.pop(key, None)
            self._texts.clear()
        entry, hit = self._clip_entry(key)

        t = time.perf_counter()
        if "visual" not in entry:
            entry["visual"] = self._visual(video, frames, features, len(observed))
        timings["visual"] = time.perf_counter() - t
        t = time.perf_counter()
        if intention is None:
            obs_key = tuple(observed)
            if obs_key not in entry["intentions"]:
                entry["intentions"][obs_key] = self._intention(video, observed, key)
            intention = entry["intentions"][obs_key]
        timings["intention"] = time.perf_counter() - t

        m = self.cfg.model
        t = time.perf_counter()
        text_vec = self._embed_text(query_text(observed, intention, m.example_text))
        timings["text_embedding"] = time.perf_counter() - t
        t = time.perf_counter()
        examples = self.bank.select(entry["visual"].mean(axis=0), text_vec, m.num_examples,
                                    visual_weight=m.visual_weight, use_mmr=m.use_mmr, mmr_lambda=m.mmr_lambda,
                                    mmr_pool=m.mmr_pool)[0]
        timings["retrieval"] = time.perf_counter() - t

        from mmreason.methods.icvl.data import build_prompt

        t = time.perf_counter()
        prompt = build_prompt(m, examples, observed, intention, z)
        visual = torch.from_numpy(entry["visual"])[None]
        cands = self.model.anticipate(visual, [prompt], [intention], k=k, z=z, seed=seed)[0]
        timings["generation"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - start
        sequences = [PredictedSequence([v for v, _ in c.pairs], [n for _, n in c.pairs],
                                       [f"{self.vocab.verbs.text(v)} {self.vocab.nouns.text(n)}" for v, n in c.pairs],
                                       c.score, c.text) for c in cands]
        return Prediction(sequences, observed, intention, examples, timings, clip_cached=hit)

    def cache_info(self) -> dict:
        return {"clips": len(self._clips), "texts": len(self._texts), "capacity": self.cache_size}

    def clear_cache(self) -> None:
        self._clips.clear()
        self._texts.clear()
