"""Run asset specs over their items through a cached LLM/VLM backend and write the curated files.

What a run guarantees:
    - every check that needs no model (asset and dataset names, items files, videos and time ranges, ``only``
      names, templates, the model path or id, the backend's availability) runs first, and all problems are
      reported together before any model loads (``preflight.check_generation``);
    - the model loads only when a request misses the response cache (``DeferredBackend``): a run served from
      the cache never loads it, and several assets share one load;
    - every answer goes through the content-addressed response cache, written as each batch finishes, so a
      killed run restarts where it stopped and regenerates nothing that was done;
    - an answer that does not parse, stops mid-sentence, ran into ``max_tokens`` (its unfinished last line is
      dropped before parsing) or copies the prompt's own examples is retried with a new sample index (and, for
      greedy stages, the ``retry_temperature``, since greedy decoding would repeat itself) up to
      ``max_attempts`` times; every failed attempt is recorded in the manifest;
    - the manifest lists every item that has no curated record (``missing``), with the failed attempts of each
      (``failures``, kept across ``only`` reruns until the item succeeds); the summary names them, and
      ``mmreason generate`` exits with status 1 while any remain (``--allow-failures``: 0);
    - ``only`` regenerates some items and keeps the others' curated records; ``force`` ignores cached answers
      for the selected items; ``dry_run`` prints the rendered prompts and the cache hit/miss counts;
    - progress advances per answered request.

Files: curated assets under ``assets.paths.knowledge_root`` (``knowledge_root=``, ``$MMREASON_KNOWLEDGE``, ...),
answers under ``llm.paths.response_cache_dir`` (``cache_dir=``, else ``$MMREASON_CACHE/llm_responses``).

Example:
    >>> from mmreason.assets.build import generate_assets
    >>> summary = generate_assets("subactions", "demo", backend="hf", model="embedded")   # doctest: +SKIP
    >>> summary["generated"], summary["cached"], summary["missing"]                        # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from mmreason.assets.io import read_records, write_embeddings, write_manifest, write_records
from mmreason.assets.paths import embedding_cache_dir
from mmreason.assets.preflight import Job, check_generation
from mmreason.assets.prompts import PromptTemplate
from mmreason.assets.spec import AssetSpec
from mmreason.llm.parsing import ParseError, copied_from, drop_unfinished_line, normalize_words
from mmreason.utils.io import read_json

# Fields that only exist while building (template variables), never in curated records.
_BUILD_ONLY = {"class_name", "observed_clause", "kind", "head", "relation", "tail", "num_steps"}


def generate_assets(asset: str, dataset: str, **kwargs: Any) -> dict:
    """Generate ``asset`` for ``dataset``: writes ``<knowledge root>/<dataset>/<asset>.{jsonl,manifest.json,
    embeddings.npz}`` and returns its summary. Arguments as :func:`generate_many`."""
    return generate_many([asset], [dataset], **kwargs)[0]


def generate_many(assets: Sequence[str], datasets: Sequence[str], *, backend: str = "hf", model: str = "embedded",
                  classes: Sequence[str] | None = None, classes_file: str | os.PathLike | None = None,
                  items: Sequence[dict] | None = None, items_file: str | os.PathLike | None = None,
                  knowledge_root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                  only: Sequence[str] = (), force: bool = False, dry_run: bool = False, max_attempts: int = 3,
                  retry_temperature: float = 0.7, batch_size: int = 8, embed: bool = True,
                  embedder: str = "embedded", prompt_style: str = "completion", options: dict | None = None,
                  seed: int = 0, num_frames: int = 8, backend_kwargs: dict | None = None, llm: Any = None,
                  prompts_root: str | os.PathLike | None = None, progress: bool = True,
                  echo: Callable[[str], None] = print) -> list[dict]:
    """Generate every asset in ``assets`` for every dataset in ``datasets`` with one backend (loaded at most once).

    Args:
        assets: ``subactions``, ``action_graph``, ``intentions``, ``label_semantics`` (``mmreason ls assets``).
        datasets: each names an output folder and, for class assets, the bundled class list.
        backend / model: LLM backend name and model id or path (``"embedded"`` = the packaged Gemma 3 270M).
        llm: an already built backend (overrides ``backend``/``model``), e.g. a deterministic test backend.
        knowledge_root / cache_dir: where curated assets and LLM answers go (default: ``assets.paths``).
        only / force / dry_run: selective regeneration, cache bypass, preview (see the module docstring).
        batch_size: requests sent to the backend per call (the cache is written after each call).
        options: asset options, e.g. ``{"num_steps": 3}`` for sub-actions.
        prompts_root: a folder laid out like ``prompts/`` (default: the shipped prompts).

    Returns:
        one summary per (dataset, asset) pair: ``{"asset", "dataset", "items", "generated", "cached", "failed",
        "failed_items", "missing", "records", "path"}``; ``missing`` names every item without a curated record.

    Raises:
        GenerationCheckError: before any model loads, listing every problem found (one line each).
    """
    from mmreason.assets.paths import knowledge_root as resolve_root
    from mmreason.llm import CachedBackend, ResponseCache
    from mmreason.llm.paths import response_cache_dir

    pairs = check_generation(assets, datasets, backend=backend, model=model, llm=llm, classes=classes,
                            classes_file=classes_file, items=items, items_file=items_file, only=only,
                            prompt_style=prompt_style, prompts_root=prompts_root, knowledge_root=knowledge_root,
                            cache_dir=cache_dir, max_attempts=max_attempts, batch_size=batch_size,
                            num_frames=num_frames)
    root = resolve_root(knowledge_root)
    cache = ResponseCache(response_cache_dir(cache_dir))
    backend_name = backend if llm is None else getattr(llm, "name", "?")
    if llm is None:
        llm = _make_backend(backend, model, cache, dict(backend_kwargs or {}))
    if dry_run:
        runner: Any = _DryRunner(cache, llm.model_id, getattr(llm, "revision", "") or "", echo)
    else:
        runner = CachedBackend(llm, cache, mode="refresh" if force else "use")
    settings = dict(only=tuple(only), dry_run=dry_run, max_attempts=max_attempts, retry_temperature=retry_temperature,
                    batch_size=batch_size, embed=embed, embedder=embedder, prompt_style=prompt_style,
                    options=dict(options or {}), seed=seed, num_frames=num_frames, progress=progress, echo=echo,
                    backend_name=backend_name)
    try:
        return [_run(pair, runner, llm, root, **settings) for pair in pairs]
    except KeyboardInterrupt:  # Ctrl-C: what was answered is in the cache already
        raise KeyboardInterrupt(f"the answers generated so far are kept in {cache.root}; the same command "
                                "continues from there") from None


def _make_backend(backend: str, model: str, cache: Any, backend_kwargs: dict) -> Any:
    from mmreason.llm import DeferredBackend, DeterministicBackend, ReplayBackend

    if backend == "replay":
        return ReplayBackend(cache, model)
    if backend == "deterministic":  # a test backend: its identity does not depend on --model
        return DeterministicBackend(**backend_kwargs)
    return DeferredBackend(backend, model, **backend_kwargs)


def _run(pair: Job, runner: Any, llm: Any, root: Path, *, only: tuple, dry_run: bool, max_attempts: int,
         retry_temperature: float, batch_size: int, embed: bool, embedder: str, prompt_style: str, options: dict,
         seed: int, num_frames: int, progress: bool, echo: Callable[[str], None], backend_name: str) -> dict:
    """Generate one checked (asset, dataset) pair and write its files."""
    from mmreason.llm import Request, SamplingParams, key_for

    spec, dataset, paths, templates = pair.spec, pair.dataset, pair.paths, pair.templates
    model_id, revision = llm.model_id, getattr(llm, "revision", "") or ""
    ids = [it["id"] for it in pair.items]

    frames: Any = {}
    if any(st.with_images for st in spec.stages):  # decoded when a request is built, a few clips held at a time
        from mmreason.assets.intentions import ClipFrames

        frames = ClipFrames(pair.selected, num_frames)

    base_vars = spec.variables(options)
    records = {it["id"]: {**it, **base_vars} for it in pair.selected}
    failures: list[dict] = []
    sources: dict[str, list[str]] = {i: [] for i in records}
    counts = {"generated": 0, "cached": 0, "pending": 0}

    for stage in spec.stages:
        template = templates[stage.name]
        # one request per (item, expansion); retried with a new sample index while it does not parse
        jobs = []
        for item_id, record in records.items():
            for variables in stage.expand(record):
                jobs.append({"item": item_id, "vars": variables, "attempts": [], "value": None, "done": False})

        def request_for(job: dict, sample_index: int):
            rendered = template.render(**job["vars"])
            temperature = stage.temperature if sample_index == 0 else max(stage.temperature, retry_temperature)
            sampling = SamplingParams(temperature=temperature, max_tokens=stage.max_tokens, seed=seed,
                                      stop=tuple(stage.stop_completion) if template.style == "completion" else ())
            kwargs = {"prompt": rendered} if template.style == "completion" else {"messages": rendered}
            return Request(**kwargs, images=frames.get(job["item"], ()) if stage.with_images else (),
                           sampling=sampling, template_id=template.id, template_hash=template.hash,
                           sample_index=sample_index, tag=job["item"])

        bar = _progress(len(jobs), f"{spec.name}/{dataset}/{stage.name}", progress and not dry_run)
        pending = jobs
        for attempt in range(max_attempts):
            if not pending:
                break
            retry = []
            for start in range(0, len(pending), batch_size):
                chunk = pending[start:start + batch_size]
                requests = [request_for(job, attempt) for job in chunk]
                generations = _generate(runner, requests, bar)
                for job, request, gen in zip(chunk, requests, generations):
                    if gen is None:  # dry run: not in the cache
                        counts["pending"] += 1
                        job["done"] = None
                        continue
                    counts["cached" if gen.cached else "generated"] += 1
                    # the cache-aware runners report the key; recompute only for a runner that does not
                    sources[job["item"]].append(gen.cache_key or key_for(request, model_id, revision))
                    try:
                        job["value"], job["done"] = _parse(stage, template, gen, job["vars"]), True
                    except ParseError as e:
                        job["attempts"].append({"sample_index": attempt, "text": gen.text, "error": str(e)})
                        if attempt + 1 < max_attempts:
                            retry.append(job)
            bar.add(len(retry))  # the retries are requests too
            pending = retry
        bar.close()

        # fold results into records; an item with any failed (or unknown, in a dry run) request leaves the run
        by_item: dict[str, list] = {}
        for job in jobs:
            by_item.setdefault(job["item"], []).append(job)
        for item_id, item_jobs in by_item.items():
            if any(j["done"] is None for j in item_jobs):
                records.pop(item_id)
                continue
            bad = [j for j in item_jobs if not j["done"]]
            if bad:
                failures.append({"id": item_id, "stage": stage.name,
                                 "failed_requests": [{"variables": _public(j["vars"]), "attempts": j["attempts"]}
                                                     for j in bad]})
                records.pop(item_id)
                continue
            stage.collect(records[item_id], [(j["vars"], j["value"]) for j in item_jobs])
            retried = [j for j in item_jobs if j["attempts"]]
            if retried:  # parsed in the end, but the failed attempts are kept for review
                records[item_id].setdefault("_retries", []).extend(
                    {"stage": stage.name, "attempts": j["attempts"]} for j in retried)
        for item_id in [i for i in records if i not in by_item]:  # an item whose expansion was empty
            stage.collect(records[item_id], [])

    failed_items = [f["id"] for f in failures]
    summary = {"asset": spec.name, "dataset": dataset, "items": len(pair.selected), "generated": counts["generated"],
               "cached": counts["cached"], "failed": len(failures), "failed_items": failed_items, "missing": [], "stale": [],
               "records": 0, "path": str(paths["records"])}
    if dry_run:
        summary["uncached_requests"] = counts["pending"]
        echo(f"dry run: {counts['cached']} cached, {counts['pending']} to generate "
             f"(later stages are counted only for items whose earlier answers are cached)")
        return summary

    retries = {i: r.pop("_retries") for i, r in records.items() if "_retries" in r}
    new_records = {i: {**{k: v for k, v in r.items() if k not in _BUILD_ONLY}, "sources": sources[i]}
                   for i, r in records.items()}
    earlier = {r["id"]: r for r in read_records(paths["records"])} if paths["records"].is_file() else {}
    # --only keeps the curated records of the items it did not touch; an item whose regeneration failed (e.g.
    # under --force) keeps its earlier record too, named in the manifest as stale: nothing generated is lost
    kept = {i: r for i, r in earlier.items() if only and i not in set(only)}
    stale = [i for i in failed_items if i in earlier and i not in new_records]
    kept.update((i, earlier[i]) for i in stale)
    previous = read_json(paths["manifest"]) if only and paths["manifest"].is_file() else {}
    ordered = [new_records.get(i) or kept.get(i) for i in ids]
    ordered = [r for r in ordered if r is not None]
    write_records(paths["records"], ordered)
    have = {r["id"] for r in ordered}
    missing = [i for i in ids if i not in have]
    # an --only rerun keeps what the manifest knew about the items it did not touch: their retries, and the
    # failed attempts of those still without a record
    failures += [f for f in previous.get("failures", []) if f.get("id") not in set(only) and f.get("id") in missing]
    retries = {**{i: r for i, r in previous.get("retried", {}).items() if i in kept}, **retries}
    summary.update(records=len(ordered), missing=missing, stale=stale)

    embed_model = None
    if embed and spec.embed_texts is not None and ordered:
        embed_model = _write_embeddings(spec, ordered, paths["embeddings"], embedder, embedding_cache_dir())
    write_manifest(paths["manifest"], {
        "asset": spec.name, "version": spec.version, "dataset": dataset, "created": _now(),
        "model_id": model_id, "revision": revision, "backend": backend_name,
        "prompt_style": prompt_style, "templates": {t.id: t.hash for t in templates.values()},
        "sampling": {st.name: {"temperature": st.temperature, "max_tokens": st.max_tokens, "seed": seed,
                               "retry_temperature": retry_temperature} for st in spec.stages},
        "options": {**base_vars}, "max_attempts": max_attempts, "embedder": embed_model,
        "counts": {"items": len(ids), "selected": len(pair.selected), "records": len(ordered),
                   "generated": counts["generated"], "cached": counts["cached"], "failed": len(failed_items),
                   "missing": len(missing)},
        "missing": missing, "stale": stale, "failures": failures, "retried": retries, "python": platform.python_version(),
    })
    echo(f"{spec.name}/{dataset}: {len(pair.selected)} items, {counts['generated']} generated, {counts['cached']} "
         f"cached, {len(failed_items)} failed -> {paths['records']}")
    if missing:
        echo(f"{spec.name}/{dataset}: {len(missing)} of {len(ids)} items have no record: {_names(missing)} "
             f"(failed attempts in {paths['manifest']})")
    if stale:
        echo(f"{spec.name}/{dataset}: {len(stale)} items failed to regenerate and keep their earlier record: "
             f"{_names(stale)} (failed attempts in {paths['manifest']})")
    return summary


def _names(ids: list[str], n: int = 8) -> str:
    shown = ", ".join(repr(i) for i in ids[:n])
    return shown + (f" and {len(ids) - n} more" if len(ids) > n else "")


def _generate(runner: Any, requests: list, bar: Any) -> list:
    """``runner.generate(requests)``, advancing ``bar`` as each request is answered (``answer_progress``); the
    answers a backend did not report are counted when it returns."""
    from mmreason.llm import answer_progress

    done = 0

    def tick(n: int) -> None:
        nonlocal done
        n = min(n, len(requests) - done)  # never more than this call's requests
        done += n
        bar.update(n)

    with answer_progress(tick):
        generations = runner.generate(requests)
    tick(len(requests))
    return generations


def _parse(stage, template: PromptTemplate, gen: Any, variables: dict) -> Any:
    """Parse one answer (see the module docstring); ``ParseError`` says why it was rejected."""
    text = template.priming + gen.text if template.style == "completion" else gen.text
    cut = gen.finish_reason == "length"
    if cut:  # the last line stopped where max_tokens did, not where the model would have
        text = drop_unfinished_line(text)
    try:
        value = stage.parse(text, variables)
        _reject_copies(value, template, variables)
    except ParseError as e:
        if cut:
            raise ParseError(f"{e} (the answer reached max_tokens={stage.max_tokens}; its unfinished last line "
                             "was dropped)") from None
        raise
    return value


def _reject_copies(value: Any, template: PromptTemplate, variables: dict) -> None:
    """``ParseError`` when a sentence or triple of the answer copies the prompt's own examples or instructions
    (``parsing.copied_from``: a small model's usual failure). A class that is itself one of the examples (e.g.
    "drink" beside "drink water") may repeat it."""
    own = template.own_lines
    name = normalize_words(str(variables.get("class_name", "")))
    if name and f" {name} " in f" {normalize_words(' '.join(own))} ":
        return
    # the prompt wrote the answer's lead ("The person intends to"): only the model's own words are compared
    lead = normalize_words(template.answer_lead)
    texts = [normalize_words(s) for s in _strings(value)]
    texts = [s[len(lead):].strip() if lead and (s + " ").startswith(lead + " ") else s for s in texts]
    copies = copied_from(texts, own)
    if copies:
        raise ParseError(f"the answer copies the prompt's examples instead of answering: {copies[:3]}")


def _strings(value: Any) -> list[str]:
    """The texts in a parsed value: its strings; a triple ``[head, relation, tail]`` in a list reads as one text."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _strings(v)]
    out: list[str] = []
    for v in value if isinstance(value, (list, tuple)) else ():
        if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            out.append(" ".join(v))
        else:
            out += _strings(v)
    return out


def _public(variables: dict) -> dict:
    return {k: v for k, v in variables.items() if isinstance(v, (str, int, float)) and k != "observed_clause"}


def _write_embeddings(spec: AssetSpec, records: list[dict], path: Path, embedder: str, cache_dir: Path) -> str:
    """Embed each record's texts (through the on-disk label-embedding cache) and write them beside the records."""
    from mmreason.text import EmbeddingCache, TextEmbedder

    ids, texts = [], []
    for r in records:
        for t in spec.embed_texts(r):
            ids.append(r["id"])
            texts.append(t)
    model = TextEmbedder() if embedder == "embedded" else TextEmbedder(embedder)
    vectors = EmbeddingCache(cache_dir).embed(model, texts)
    write_embeddings(path, ids, texts, vectors, model=model.identity)
    return model.identity


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class _DryRunner:
    """Looks requests up in the cache only, printing each rendered prompt; a miss returns None."""

    def __init__(self, cache: Any, model_id: str, revision: str, echo: Callable[[str], None]):
        from mmreason.llm import ReplayBackend

        self.replay = ReplayBackend(cache, model_id, revision)
        self.echo = echo

    def generate(self, requests: list) -> list:
        from mmreason.llm import CacheMissError

        out = []
        for r in requests:
            try:
                gen = self.replay.generate([r])[0]
                status = "HIT "
            except CacheMissError:
                gen, status = None, "MISS"
            shown = r.prompt if r.prompt is not None else json.dumps(r.messages, ensure_ascii=False, indent=1)
            self.echo(f"----- [{status}] {r.tag} ({r.template_id}, sample {r.sample_index})\n{shown}")
            out.append(replace(gen, cached=True) if gen is not None else None)
        return out


class _Bar:
    """Counts answered requests; shows them with tqdm when enabled. ``add(n)`` grows the total (retries)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.total, self.n = total, 0
        self.tqdm = None
        if enabled:
            from tqdm.auto import tqdm

            self.tqdm = tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.n += n
        if self.tqdm is not None:
            self.tqdm.update(n)

    def add(self, n: int) -> None:
        self.total += n
        if self.tqdm is not None and n:
            self.tqdm.total = self.total
            self.tqdm.refresh()

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


def _progress(total: int, desc: str, enabled: bool) -> _Bar:
    return _Bar(total, desc, enabled)
