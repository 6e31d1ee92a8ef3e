"""Interactive long-term action anticipation with a trained (or configured) ICVL model.

    >>> from mmreason import Anticipator                                              # doctest: +SKIP
    >>> ant = Anticipator.from_pretrained("runs/icvl_tiny")         # run folder (newest checkpoint) or config
    >>> p = ant.predict(video="kitchen.mp4", observed=["take knife", "cut onion", ...], k=5, z=20)
    >>> p.sequences[0].actions[:2], p.intention, p.examples[0].key
    >>> preds = ant.predict_batch([{"key": "clip1_7", "video": "clip1.mp4", "observed": [...]}, ...])
    >>> ant.to_submission(preds, "outputs.json")                     # the Ego4D LTA EvalAI format

Everything heavy is loaded once in :meth:`Anticipator.from_pretrained`: the model (LLM + LoRA + fusion +
projector), the vocabulary, the example bank with its FAISS index, the text embedder and the intention backend; the
frame encoder on the first video or frames query. Per-clip work (frame decoding and encoding, the intention, the
query-text embedding) is kept in an in-memory LRU keyed by video path + modification time + size, or by the SHA-256
of a frames/features array; answers are memoised per (clip, observed, intention, k, z, seed), so a repeated query
costs a dictionary lookup and a new seed re-runs generation only.

Frame encoder: the one the run's features came from, named by the run's ``data.encoder`` (the spec string of
``mmreason extract --encoder``, see :mod:`mmreason.features.encoders`), built on first use. A ``frame_encoder=``
passed to :meth:`from_pretrained` must carry the same spec, and a features folder whose ``extract.json`` names
another encoder is an error: a video is never encoded differently from the training features. The synthetic configs
record ``pixels:<dim>``, the weight-free test encoder, as theirs.

Example bank: the training windows (keys, observed/future texts, visual and text embeddings, FAISS index) are saved in
the run folder (``<run>/example_bank/``, after training, by the method's ``post_train``) and loaded from there, so
the training data need not be on disk at query time.

Intentions: an ``intention=`` argument wins; otherwise, for a video, the intention asset engine generates it
(``mmreason.assets.intentions``, answers in the response cache ``data.llm_cache_dir``, the one-record asset files in
``~/.cache/mmreason/anticipator_intentions``) with the run's ``data.intention_backend``/``data.intention_model`` or
the ``intention_llm`` given to ``from_pretrained``; a text-only model sees the observed actions without the frames
(``Prediction.intention_source`` says which). Frames or features without an intention get none.
"""
from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from mmreason.data.anticipation import map_action_phrase
from mmreason.features.encoders import PixelFrameEncoder  # noqa: F401  (the test encoder, importable from here too)
from mmreason.methods.icvl.examples import Example, ExampleBank, query_text
from mmreason.registry import did_you_mean

BANK_DIR = "example_bank"


class AnticipationInputError(ValueError):
    """A query's input is unusable; the message names the input and what to do."""


class EncoderMismatchError(AnticipationInputError):
    """Video would be encoded with another encoder than the run's features came from."""


class UntrainedModelWarning(UserWarning):
    """The Anticipator was built from a config or a run without checkpoints: adapters as initialised."""


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
    """The answer to one query: K sequences (best first), the intention and where it came from, the in-context
    examples, timings. ``key`` names the query (Ego4D: ``"{clip_uid}_{last observed action_idx}"``)."""

    sequences: list[PredictedSequence]
    observed: list[str]
    intention: str
    examples: list[Example]
    timings: dict = field(default_factory=dict)
    clip_cached: bool = False
    key: str = ""
    intention_source: str = "none"
    answer_cached: bool = False

    def to_dict(self) -> dict:
        return {"key": self.key, "observed": self.observed, "intention": self.intention,
                "intention_source": self.intention_source, "sequences": [s.to_dict() for s in self.sequences],
                "examples": [e.to_dict() for e in self.examples],
                "timings_s": {k: round(v, 6) for k, v in self.timings.items()}, "clip_cached": self.clip_cached,
                "answer_cached": self.answer_cached}


def split_evenly(num: int, parts: int) -> list[np.ndarray]:
    """``num`` frame indices into ``parts`` contiguous, nearly equal chunks (each non-empty when num >= parts)."""
    return [c for c in np.array_split(np.arange(num), parts)]


# ================================================================================================ the example bank

def run_root(path: str | os.PathLike) -> Path | None:
    """The run folder of a run folder or of one of its checkpoint folders (``None`` for anything else)."""
    path = Path(str(path))
    if (path / "checkpoints").is_dir():
        return path
    if path.parent.name == "checkpoints" and (path / "model.safetensors").is_file():
        return path.parent.parent
    return None


def _bank_settings(cfg) -> dict:
    """What the bank's contents depend on besides the training windows; a saved bank must match them."""
    m = cfg.model
    return {"text_embedder": m.text_embedder, "example_text": m.example_text, "visual_dim": m.visual_dim,
            "encoder": cfg.data.encoder}


def save_example_bank(cfg, run_dir: str | os.PathLike) -> str:
    """Write the training windows' example bank into ``<run_dir>/example_bank/`` (atomically): the FAISS index
    (``index/``), the embeddings (``bank.npz``), the texts and settings (``bank.json``) and the class lists the run
    was trained with (``vocab.json``). ICVL's ``post_train``."""
    import shutil
    import tempfile

    from mmreason.methods.icvl.data import example_bank, load_vocab
    from mmreason.utils.io import atomic_replace_dir, atomic_write_json

    bank, vocab = example_bank(cfg), load_vocab(cfg)
    final = Path(run_dir) / BANK_DIR
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{BANK_DIR}.", dir=final.parent))
    try:
        bank.index.save(tmp / "index")
        np.savez(tmp / "bank.npz", visual=bank.visual, text=bank.text)
        atomic_write_json(tmp / "bank.json", {"format": 1, "settings": _bank_settings(cfg), "keys": bank.keys,
                                              "clips": bank.clips, "observed": bank.observed, "future": bank.future})
        atomic_write_json(tmp / "vocab.json", {"actions": vocab.actions, **{
            kind: {"names": v.names, "display": v.display, "synonyms": v.synonyms, "kind": v.kind}
            for kind, v in (("verbs", vocab.verbs), ("nouns", vocab.nouns))}})
        atomic_replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(final)


def load_run_vocab(folder: str | os.PathLike):
    """The vocabulary saved by :func:`save_example_bank` (``None`` when there is none)."""
    from mmreason.data.anticipation import ActionVocab, Vocabulary
    from mmreason.utils.io import read_json

    path = Path(folder) / "vocab.json"
    if not path.is_file():
        return None
    data = read_json(path)
    parts = {kind: Vocabulary(tuple(v["names"]), tuple(v["display"]), tuple(tuple(s) for s in v["synonyms"]), v["kind"])
             for kind, v in ((k, data[k]) for k in ("verbs", "nouns"))}
    actions = tuple(tuple(a) for a in data["actions"]) if data.get("actions") is not None else None
    return ActionVocab(parts["verbs"], parts["nouns"], actions)


def load_example_bank(folder: str | os.PathLike, cfg) -> ExampleBank:
    """Read a bank written by :func:`save_example_bank`; it must have been built with the config's embedder, text,
    visual size and encoder (an error names what differs)."""
    from mmreason.retrieval import VectorIndex
    from mmreason.utils.io import read_json

    folder = Path(folder)
    meta = read_json(folder / "bank.json")
    changed = {k: (meta["settings"].get(k), v) for k, v in _bank_settings(cfg).items() if meta["settings"].get(k) != v}
    if changed:
        raise AnticipationInputError(f"{folder} was built with " + ", ".join(f"{k}={a!r}" for k, (a, _) in changed.items())
                                     + "; the config says " + ", ".join(f"{k}={b!r}" for k, (_, b) in changed.items())
                                     + ". Query with the run's settings (no overrides of these)")
    arrays = np.load(folder / "bank.npz")
    bank = ExampleBank.__new__(ExampleBank)   # the saved index is loaded as it is, not rebuilt
    bank.keys, bank.clips, bank.observed, bank.future = meta["keys"], meta["clips"], meta["observed"], meta["future"]
    bank.visual, bank.text = arrays["visual"], arrays["text"]
    bank.index = VectorIndex.load(folder / "index", use_gpu=False)
    if not (len(bank.keys) == len(bank.visual) == len(bank.text) == len(bank.index)):
        raise AnticipationInputError(f"{folder}: inconsistent example bank ({len(bank.keys)} keys, {len(bank.visual)} "
                                     f"visual rows, {len(bank.index)} index rows); delete it and rebuild it")
    return bank


# ================================================================================================ the API

class Anticipator:
    """Answers "what will this person do next?" for a clip and its observed actions. Build it with
    :meth:`from_pretrained`; see the module docstring."""

    def __init__(self, cfg, model, bank, embedder, *, frame_encoder: Callable[[np.ndarray], np.ndarray] | None = None,
                 intention_llm: Any = None, min_observed: int | None = None, frames_per_segment: int = 4,
                 cache_size: int = 64, trained_from: str | None = None):
        self.cfg, self.model, self.bank, self.embedder = cfg, model, bank, embedder
        self.vocab = model.vocab
        self._frame_encoder = frame_encoder
        self.intention_llm = intention_llm
        self.min_observed = cfg.data.num_observed if min_observed is None else min_observed
        self.frames_per_segment = frames_per_segment
        self.cache_size = cache_size
        self.trained_from = trained_from
        self._clips: OrderedDict[tuple, dict] = OrderedDict()      # per-clip LRU
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()  # query-text embeddings
        self._answers: OrderedDict[tuple, list] = OrderedDict()    # (clip, observed, intention, k, z, seed) -> cands
        self.model.eval()
        self.model.prepare_for_generation()   # LoRA merged, model.generation_dtype: this model never trains

    @classmethod
    def from_pretrained(cls, run_or_config: str | os.PathLike, overrides: Sequence[str] = (), *,
                        intention_llm: Any = None, frame_encoder: Callable | None = None,
                        min_observed: int | None = None, frames_per_segment: int = 4, cache_size: int = 64,
                        device: str | None = None) -> "Anticipator":
        """Load once: a run folder (config + newest checkpoint + saved example bank), one of its checkpoint folders,
        a saved ``config.json``, or an ICVL config name/YAML. A config, or a run without checkpoints, is UNTRAINED
        (base LLM, zero LoRA, identity fusion, random projector): that warns (:class:`UntrainedModelWarning`)."""
        from mmreason.experiment import load_experiment
        from mmreason.methods.icvl import build_model
        from mmreason.methods.icvl.data import text_embedder

        method, cfg = load_experiment(run_or_config, overrides)
        if method.name != "icvl":
            raise ValueError(f"{run_or_config}: the Anticipator needs an ICVL run or config, got method {method.name!r}")
        spec = cfg.data.encoder
        if frame_encoder is not None and getattr(frame_encoder, "spec", None) != spec:
            raise EncoderMismatchError(
                f"{run_or_config} was trained on features from encoder {spec!r} (data.encoder), but frame_encoder is "
                f"{getattr(frame_encoder, 'spec', None) or type(frame_encoder).__name__!r}; leave frame_encoder out "
                "(the run's encoder is built), or pass a FrameEncoder whose .spec is the run's")
        if cfg.data.features_dir and Path(cfg.data.features_dir).is_dir():
            from mmreason.features import ExtractionInputError, check_features_encoder

            try:
                check_features_encoder(cfg.data.features_dir, spec, "the run's data.encoder")
            except ExtractionInputError as e:
                raise EncoderMismatchError(str(e)) from e
        bank = _bank_for(run_or_config, cfg)   # before the LLM loads: a missing bank fails fast
        root = run_root(run_or_config)
        vocab = load_run_vocab(root / BANK_DIR) if root is not None else None
        if vocab is not None and not cfg.data.dataset.startswith("synthetic"):
            from mmreason.methods.icvl.model import ICVL

            model = ICVL(cfg.model, vocab)   # the run's class lists: the dataset files need not be on disk
        else:
            model = build_model(cfg)
        trained_from = None
        path = Path(str(run_or_config))
        if path.is_dir() and ((path / "checkpoints").is_dir() or (path / "model.safetensors").is_file()):
            from mmreason.engine import latest_checkpoint, load_checkpoint

            if (path / "model.safetensors").is_file() or latest_checkpoint(path) is not None:
                trained_from = str(load_checkpoint(model, path)["path"])
        if trained_from is None:
            warnings.warn(f"{run_or_config}: no trained checkpoint, so this Anticipator is UNTRAINED: the base LLM "
                          "with zero-initialised LoRA, identity fusion and a random projector; its forecasts are not "
                          "ICVL's. Pass a trained run folder (mmreason train ... train.output_dir=RUN).",
                          UntrainedModelWarning, stacklevel=2)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
        return cls(cfg, model, bank, text_embedder(cfg.model.text_embedder),
                   frame_encoder=frame_encoder, intention_llm=intention_llm, min_observed=min_observed,
                   frames_per_segment=frames_per_segment, cache_size=cache_size, trained_from=trained_from)

    @property
    def frame_encoder(self):
        """The run's frame encoder (``data.encoder``), built on first use."""
        if self._frame_encoder is None:
            from mmreason.features import load_encoder

            self._frame_encoder = load_encoder(self.cfg.data.encoder, device=str(self.model.device))
        return self._frame_encoder

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
        encoder = self.frame_encoder   # built (and its spec checked) before any frame is decoded
        if getattr(encoder, "dim", d) != d:
            raise EncoderMismatchError(f"encoder {self.cfg.data.encoder!r} gives {encoder.dim}-d features, the model "
                                       f"takes {d}-d (model.visual_dim)")
        if video is not None:
            from mmreason.video import probe, read_frames_at

            info = probe(video)
            if info.num_frames < n:
                raise AnticipationInputError(f"video {video}: {info.num_frames} frames, fewer than the {n} observed "
                                             "segments it is split into")
            # frames_per_segment frames at the centres of equal sub-bins of each of the n equal segments, as
            # `mmreason extract` samples each annotated action
            times = (np.arange(n * self.frames_per_segment) + 0.5) * info.duration / (n * self.frames_per_segment)
            frames = read_frames_at(video, times.tolist())
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise AnticipationInputError(f"frames: expected uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
        if len(frames) < n:
            raise AnticipationInputError(f"frames: {len(frames)} frames cannot cover {n} observed segments")
        encoded = np.asarray(encoder(frames), dtype=np.float32)   # [T, D]
        if encoded.shape != (len(frames), d):
            raise AnticipationInputError(f"frame encoder returned {encoded.shape}, expected [{len(frames)}, {d}]")
        return np.stack([encoded[chunk].mean(axis=0) for chunk in split_evenly(len(frames), n)])

    def _intention(self, video: str | None, observed: list[str], key: tuple) -> tuple[str, str]:
        """``(intention, source)`` for a video query (none for frames/features)."""
        if video is None or self.cfg.data.intentions == "none":
            return "", "none"
        from mmreason.llm.embedded import mmreason_cache_dir
        from mmreason.methods.icvl.data import generate_intentions

        d = self.cfg.data
        clip_id = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        if self.intention_llm is None:   # built on first use, then kept (loading a model takes seconds)
            from mmreason.methods.icvl.data import intention_llm

            self.intention_llm = intention_llm(d.intention_backend, d.intention_model) or d.intention_backend
        # the answers live in the response cache; the one-record asset files of single queries are scratch
        scratch = mmreason_cache_dir() / "anticipator_intentions"
        table, source = generate_intentions([{"id": clip_id, "video": str(video), "observed": observed}], clip_id,
                                            self.intention_llm, d.intention_model, str(scratch), d.llm_cache_dir,
                                            num_frames=d.intention_frames, with_source=True)
        return table[clip_id], f"{source}: {getattr(self.intention_llm, 'model_id', None) or d.intention_model}"

    def _embed_text(self, text: str) -> np.ndarray:
        if text in self._texts:
            self._texts.move_to_end(text)
            return self._texts[text]
        vec = np.asarray(self.embedder.embed([text]))[0]
        self._texts[text] = vec
        while len(self._texts) > 4 * self.cache_size:
            self._texts.popitem(last=False)
        return vec

    # ------------------------------------------------------------------------------------------ queries
    def _validate(self, query: Mapping, k: int, z: int) -> dict:
        """The cheap checks of one query (fields, observed actions, the clip input exists): run for every query of a
        batch before any frame is decoded or anything generated."""
        unknown = set(query) - {"observed", "video", "frames", "features", "intention", "key"}
        if unknown:
            raise AnticipationInputError(f"query has unknown fields {sorted(unknown)}; use observed, one of video / "
                                         "frames / features, and optionally intention and key")
        video, frames, features = query.get("video"), query.get("frames"), query.get("features")
        given = [name for name, v in (("video", video), ("frames", frames), ("features", features)) if v is not None]
        if len(given) != 1:
            raise AnticipationInputError("give exactly one of video=, frames= or features= "
                                         f"(got {', '.join(given) or 'none'})")
        if k < 1 or z < 1:
            raise AnticipationInputError(f"k and z must be >= 1, got k={k}, z={z}")
        start = time.perf_counter()
        observed = self.canonical_observed(query.get("observed", ()))
        video = str(video) if video is not None else None
        return {"query": query, "observed": observed, "video": video, "frames": frames, "features": features,
                "clip": self._clip_key(video, frames, features, len(observed)), "start": start}

    def _prepare(self, v: dict, k: int, z: int, seed: int, use_cache: bool) -> dict:
        """Everything of one validated query up to generation: visual tokens, intention, examples, prompt."""
        from mmreason.methods.icvl.data import build_prompt

        query, observed, video, frames, features = v["query"], v["observed"], v["video"], v["frames"], v["features"]
        key, start, timings = v["clip"], v["start"], {}
        if not use_cache:
            self._clips.pop(key, None)
            self._texts.clear()
        entry, hit = self._clip_entry(key)

        t = time.perf_counter()
        if "visual" not in entry:
            entry["visual"] = self._visual(video, frames, features, len(observed))
        timings["visual"] = time.perf_counter() - t
        t = time.perf_counter()
        intention, source = query.get("intention"), "given"
        if intention is None:
            obs_key = tuple(observed)
            if obs_key not in entry["intentions"]:
                entry["intentions"][obs_key] = self._intention(video, observed, key)
            intention, source = entry["intentions"][obs_key]
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
        name = Path(video).stem if video is not None else f"{key[0]}-{key[1][:12]}"
        return {"observed": observed, "intention": intention, "source": source, "examples": examples,
                "prompt": build_prompt(m, examples, observed, intention, z), "visual": entry["visual"],
                "answer_key": (key, tuple(observed), intention, k, z, seed), "clip_cached": hit,
                "key": str(query.get("key") or f"{name}_{len(observed) - 1}"), "timings": timings, "start": start}

    def _finish(self, q: dict, cands: list, generation_s: float, answer_cached: bool) -> Prediction:
        q["timings"]["generation"] = generation_s
        q["timings"]["total"] = time.perf_counter() - q["start"]
        sequences = [PredictedSequence([v for v, _ in c.pairs], [n for _, n in c.pairs],
                                       [f"{self.vocab.verbs.text(v)} {self.vocab.nouns.text(n)}" for v, n in c.pairs],
                                       c.score, c.text) for c in cands]
        return Prediction(sequences, q["observed"], q["intention"], q["examples"], q["timings"], q["clip_cached"],
                          key=q["key"], intention_source=q["source"], answer_cached=answer_cached)

    def predict(self, *, observed: Sequence[str], video: str | os.PathLike | None = None, frames: Any = None,
                features: Any = None, intention: str | None = None, k: int = 5, z: int = 20, seed: int = 0,
                key: str | None = None, use_cache: bool = True) -> Prediction:
        """K candidate sequences of the next Z actions after ``observed`` on one clip.

        Exactly one of ``video`` (a file; split into ``len(observed)`` equal segments), ``frames`` (uint8
        ``[T, H, W, 3]``, split likewise) or ``features`` (``[len(observed), D]`` visual features) is the clip.
        ``key`` names the prediction (default: the video's stem, or a digest of the array, + ``_<len(observed)-1>``).
        ``use_cache=False`` recomputes the per-clip work and the answer (for benchmarking).
        """
        query = {"observed": observed, "video": video, "frames": frames, "features": features,
                 "intention": intention, "key": key}
        return self.predict_batch([{n: v for n, v in query.items() if v is not None}], k=k, z=z, seed=seed,
                                  use_cache=use_cache)[0]

    def predict_batch(self, queries: Sequence[Mapping], *, k: int = 5, z: int = 20, seed: int = 0,
                      batch_size: int | None = None, use_cache: bool = True) -> list[Prediction]:
        """:meth:`predict` for many queries, generated together (``batch_size`` prompts per LLM call, default
        ``data.eval_batch_size``). Each query is a mapping with ``observed``, one of ``video`` / ``frames`` /
        ``features``, and optionally ``intention`` and ``key``. Every query is checked (vocabulary, inputs) before
        anything is generated. A prompt's answer does not depend on the batch it is generated in."""
        validated = [self._validate(q, k, z) for q in queries]
        prepared = [self._prepare(v, k, z, seed, use_cache) for v in validated]
        out: list[Prediction | None] = [None] * len(prepared)
        todo = []
        for i, q in enumerate(prepared):
            cached = self._answers.get(q["answer_key"]) if use_cache else None
            if cached is not None:
                self._answers.move_to_end(q["answer_key"])
                out[i] = self._finish(q, cached, 0.0, True)
            else:
                todo.append(i)
        size = batch_size or self.cfg.data.eval_batch_size
        by_length: dict[int, list[int]] = {}   # one batch holds one number of visual tokens
        for i in todo:
            by_length.setdefault(len(prepared[i]["observed"]), []).append(i)
        for group in by_length.values():
            for s in range(0, len(group), size):
                chunk = group[s:s + size]
                t = time.perf_counter()
                visual = torch.from_numpy(np.stack([prepared[i]["visual"] for i in chunk]))   # [B, N, D]
                cands = self.model.anticipate(visual, [prepared[i]["prompt"] for i in chunk],
                                              [prepared[i]["intention"] for i in chunk], k=k, z=z, seed=seed)
                seconds = (time.perf_counter() - t) / len(chunk)
                for i, c in zip(chunk, cands):
                    self._answers[prepared[i]["answer_key"]] = c
                    out[i] = self._finish(prepared[i], c, seconds, False)
        while len(self._answers) > 4 * self.cache_size:
            self._answers.popitem(last=False)
        return out

    @staticmethod
    def to_submission(predictions: Sequence[Prediction], path: str | os.PathLike, *, num_sequences: int = 5,
                      num_future: int = 20) -> Path:
        """Write ``predictions`` as the Ego4D LTA EvalAI ``outputs.json`` (``{key: {"verb": K x Z, "noun": K x Z}}``,
        official K = 5, Z = 20; other sizes only when given). Keys must be set and unique."""
        from mmreason.data.anticipation import write_ego4d_submission

        missing = [i for i, p in enumerate(predictions) if not p.key]
        if missing:
            raise AnticipationInputError(f"predictions {missing[:5]} have no key; pass key='<clip_uid>_<action_idx>'")
        verbs = [[s.verb_ids for s in p.sequences] for p in predictions]
        nouns = [[s.noun_ids for s in p.sequences] for p in predictions]
        shapes = {(len(v), len(v[0]) if v else 0) for v in verbs}
        if shapes != {(num_sequences, num_future)}:
            raise AnticipationInputError(f"predictions hold K x Z = {sorted(shapes)}; the submission needs "
                                         f"{num_sequences} x {num_future} (predict with k={num_sequences}, "
                                         f"z={num_future})")
        return write_ego4d_submission(path, [p.key for p in predictions], np.asarray(verbs, np.int64),
                                      np.asarray(nouns, np.int64), num_sequences=num_sequences, num_future=num_future)

    def cache_info(self) -> dict:
        return {"clips": len(self._clips), "texts": len(self._texts), "answers": len(self._answers),
                "capacity": self.cache_size}

    def clear_cache(self) -> None:
        self._clips.clear()
        self._texts.clear()
        self._answers.clear()


def _bank_for(run_or_config, cfg) -> ExampleBank:
    """The run's saved example bank; else the training windows' bank (then saved into the run folder, if any). No
    saved bank and no readable training data is one error naming both."""
    root = run_root(run_or_config)
    if root is not None and (root / BANK_DIR / "bank.json").is_file():
        return load_example_bank(root / BANK_DIR, cfg)
    from mmreason.methods.icvl.data import example_bank

    try:
        bank = example_bank(cfg)
    except (FileNotFoundError, OSError, ValueError, KeyError) as e:
        where = f"{root / BANK_DIR}" if root is not None else f"{run_or_config} (a config, not a run folder)"
        raise AnticipationInputError(f"no example bank saved at {where}, and the training windows to build one "
                                     f"cannot be read: {e}") from e
    if root is not None:
        try:
            save_example_bank(cfg, root)
        except OSError:   # a read-only run folder: the bank is simply rebuilt next time
            pass
    return bank
