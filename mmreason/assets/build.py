"""Run an asset spec over its items through a cached LLM/VLM backend and write the curated files.

What a run guarantees:
    - every answer goes through the content-addressed response cache, written as each batch finishes, so a
      killed run restarts where it stopped and regenerates nothing that was done;
    - an answer that does not parse is retried with a new sample index (and, for greedy stages, the
      ``retry_temperature``, since greedy decoding would repeat itself) up to ``max_attempts`` times; every failed
      attempt is recorded in the manifest, and an item that never parses is listed there, never dropped silently;
    - ``only`` regenerates some items and keeps the others' curated records; ``force`` ignores cached answers
      for the selected items; ``dry_run`` prints the rendered prompts and the cache hit/miss counts.

Example:
    >>> from mmreason.assets.build import generate_assets
    >>> summary = generate_assets("subactions", "demo", backend="hf", model="embedded")   # doctest: +SKIP
    >>> summary["generated"], summary["cached"], summary["failed"]                         # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from mmreason.assets.classes import bundled_classes, read_class_list
from mmreason.assets.io import asset_paths, read_records, write_embeddings, write_manifest, write_records
from mmreason.assets.prompts import load_template
from mmreason.assets.spec import AssetSpec
from mmreason.registry import did_you_mean

# Fields that only exist while building (template variables), never in curated records.
_BUILD_ONLY = {"class_name", "observed_clause", "kind", "head", "relation", "tail", "num_steps"}


def _spec(asset: str) -> AssetSpec:
    from mmreason.assets import ASSETS

    return ASSETS.get(asset)


def load_items(spec: AssetSpec, dataset: str, *, classes: Sequence[str] | None = None,
               classes_file: str | os.PathLike | None = None, items: Sequence[dict] | None = None,
               items_file: str | os.PathLike | None = None, knowledge_root: str | os.PathLike = "knowledge") -> list[dict]:
    """The items an asset runs over: class names (bundled list, a label file or a list) or clip records."""
    if spec.items == "clips":
        if items is None:
            if items_file is None:
                raise ValueError(f"asset {spec.name!r} runs over clips: pass items=[...] or an items file "
                                 f"(JSONL of {{'id', 'video', 'start_s', 'end_s', 'observed'}})")
            items = read_records(items_file)
        out = []
        for n, clip in enumerate(items):
            if "id" not in clip or "video" not in clip:
                raise ValueError(f"clip #{n} ({items_file or 'items'}) needs 'id' and 'video' fields, got {sorted(clip)}")
            from mmreason.assets.intentions import observed_clause

            observed = list(clip.get("observed", []))
            out.append({**clip, "id": str(clip["id"]), "observed": observed, "observed_clause": observed_clause(observed)})
        return out
    if classes is None:
        classes = read_class_list(classes_file) if classes_file else bundled_classes(dataset, knowledge_root)
    return [{"id": c, "class": c, "class_name": c} for c in classes]


def _model_identity(backend: str, model: str, llm: Any) -> tuple[str, str]:
    if llm is not None:
        return llm.model_id, getattr(llm, "revision", "") or ""
    from mmreason.llm import resolve_model_identity

    return resolve_model_identity(model)


def _make_backend(backend: str, model: str, cache: Any, backend_kwargs: dict) -> Any:
    from mmreason.llm import ReplayBackend, make_backend

    if backend == "replay":
        model_id, revision = _model_identity(backend, model, None)
        return ReplayBackend(cache, model_id, revision)
    return make_backend(backend, model=model, **backend_kwargs)


def generate_assets(asset: str, dataset: str, *, backend: str = "hf", model: str = "embedded",
                    classes: Sequence[str] | None = None, classes_file: str | os.PathLike | None = None,
                    items: Sequence[dict] | None = None, items_file: str | os.PathLike | None = None,
                    knowledge_root: str | os.PathLike = "knowledge", cache_dir: str | os.PathLike | None = None,
                    only: Sequence[str] = (), force: bool = False, dry_run: bool = False, max_attempts: int = 3,
                    retry_temperature: float = 0.7, batch_size: int = 8, embed: bool = True,
                    embedder: str = "embedded", prompt_style: str = "completion", options: dict | None = None,
                    seed: int = 0, num_frames: int = 8, backend_kwargs: dict | None = None, llm: Any = None,
                    prompts_root: str | os.PathLike | None = None, progress: bool = True,
                    echo: Callable[[str], None] = print) -> dict:
    """Generate ``asset`` for ``dataset`` and write ``knowledge/<dataset>/<asset>.{jsonl,manifest.json,embeddings.npz}``.

    Args:
        asset: ``subactions``, ``action_graph``, ``intentions`` or ``label_semantics``.
        dataset: names the output folder and, for class assets, the bundled class list.
        backend / model: LLM backend name and model id or path (``"embedded"`` = the packaged Gemma 3 270M).
        llm: an already built backend (overrides ``backend``/``model``), e.g. a deterministic test backend.
        only / force / dry_run: selective regeneration, cache bypass, preview (see the module docstring).
        options: asset options, e.g. ``{"num_steps": 3}`` for sub-actions.
        prompts_root: a folder laid out like ``prompts/`` (default: the project's prompts).

    Returns:
        ``{"asset", "dataset", "items", "generated", "cached", "failed", "records", "path"}``.
    """
    from mmreason.llm import CachedBackend, Request, ResponseCache, SamplingParams, key_for
    from mmreason.llm.parsing import ParseError

    spec = _spec(asset)
    options = dict(options or {})
    knowledge_root = Path(knowledge_root)
    cache = ResponseCache(Path(cache_dir) if cache_dir else knowledge_root / ".llm_cache")
    all_items = load_items(spec, dataset, classes=classes, classes_file=classes_file, items=items,
                           items_file=items_file, knowledge_root=knowledge_root)
    ids = [it["id"] for it in all_items]
    unknown = [o for o in only if o not in ids]
    if unknown:
        raise KeyError(f"--only {unknown[0]!r} is not an item of {dataset!r}{did_you_mean(unknown[0], ids)}")
    selected = [it for it in all_items if not only or it["id"] in only]
    templates = {st.name: load_template(spec.name, st.name, prompt_style, prompts_root) for st in spec.stages}
    paths = asset_paths(spec.name, dataset, knowledge_root)

    if llm is None and backend == "deterministic":  # a test backend: its identity does not depend on --model
        from mmreason.llm import DeterministicBackend

        llm = DeterministicBackend()
    model_id, revision = _model_identity(backend, model, llm)
    if dry_run:
        runner = _DryRunner(cache, model_id, revision, echo)
    else:
        inner = llm if llm is not None else _make_backend(backend, model, cache, dict(backend_kwargs or {}))
        runner = CachedBackend(inner, cache, mode="refresh" if force else "use")

    frames: dict[str, Any] = {}
    if any(st.with_images for st in spec.stages):
        from mmreason.assets.intentions import sample_clip_frames

        for it in selected:
            frames[it["id"]] = tuple(sample_clip_frames(it, num_frames))

    base_vars = spec.variables(options)
    records = {it["id"]: {**it, **base_vars} for it in selected}
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

        bar = _progress(len(jobs), f"{spec.name}/{stage.name}", progress and not dry_run)
        pending = jobs
        for attempt in range(max_attempts):
            if not pending:
                break
            retry = []
            for start in range(0, len(pending), batch_size):
                chunk = pending[start:start + batch_size]
                requests = [request_for(job, attempt) for job in chunk]
                generations = runner.generate(requests)
                for job, request, gen in zip(chunk, requests, generations):
                    if gen is None:  # dry run: not in the cache
                        counts["pending"] += 1
                        job["done"] = None
                        continue
                    counts["cached" if gen.cached else "generated"] += 1
                    # the cache-aware runners report the key; recompute only for a runner that does not
                    sources[job["item"]].append(gen.cache_key or key_for(request, model_id, revision))
                    text = template.priming + gen.text if template.style == "completion" else gen.text
                    try:
                        job["value"], job["done"] = stage.parse(text, job["vars"]), True
                        bar.update(1)
                    except ParseError as e:
                        job["attempts"].append({"sample_index": attempt, "text": gen.text, "error": str(e)})
                        if attempt + 1 < max_attempts:
                            retry.append(job)
                        else:
                            bar.update(1)
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

    summary = {"asset": spec.name, "dataset": dataset, "items": len(selected), "generated": counts["generated"],
               "cached": counts["cached"], "failed": len(failures), "records": 0, "path": str(paths["records"])}
    if dry_run:
        summary["uncached_requests"] = counts["pending"]
        echo(f"dry run: {counts['cached']} cached, {counts['pending']} to generate "
             f"(later stages are counted only for items whose earlier answers are cached)")
        return summary

    retries = {i: r.pop("_retries") for i, r in records.items() if "_retries" in r}
    new_records = {i: {**{k: v for k, v in r.items() if k not in _BUILD_ONLY}, "sources": sources[i]}
                   for i, r in records.items()}
    kept = {}
    if only and paths["records"].is_file():
        kept = {r["id"]: r for r in read_records(paths["records"]) if r.get("id") not in set(only)}
    ordered = [new_records.get(i) or kept.get(i) for i in ids]
    ordered = [r for r in ordered if r is not None]
    write_records(paths["records"], ordered)
    summary["records"] = len(ordered)

    embed_model = None
    if embed and spec.embed_texts is not None and ordered:
        embed_model = _write_embeddings(spec, ordered, paths["embeddings"], embedder,
                                        cache.root.parent / ".embedding_cache")
    write_manifest(paths["manifest"], {
        "asset": spec.name, "version": spec.version, "dataset": dataset, "created": _now(),
        "model_id": model_id, "revision": revision, "backend": backend if llm is None else getattr(llm, "name", "?"),
        "prompt_style": prompt_style, "templates": {t.id: t.hash for t in templates.values()},
        "sampling": {st.name: {"temperature": st.temperature, "max_tokens": st.max_tokens, "seed": seed,
                               "retry_temperature": retry_temperature} for st in spec.stages},
        "options": {**base_vars}, "max_attempts": max_attempts, "embedder": embed_model,
        "counts": {"items": len(ids), "selected": len(selected), "records": len(ordered),
                   "generated": counts["generated"], "cached": counts["cached"], "failed": len(failures)},
        "failures": failures, "retried": retries, "python": platform.python_version(),
    })
    echo(f"{spec.name}/{dataset}: {len(selected)} items, {counts['generated']} generated, {counts['cached']} cached, "
         f"{len(failures)} failed -> {paths['records']}")
    return summary


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


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True)
