"""Every check of an asset-generation run that needs no model, run before any model loads.

``check_generation`` checks asset names, dataset class lists (or a class file), items files, clip videos and their
time ranges, ``--only`` names, prompt templates, the model name or path and the backend's availability (e.g. vLLM
not installed), and returns the checked work as ``Job`` objects. Each problem is one line naming the input; all
of them are reported together in one ``GenerationCheckError`` (a ``ValueError``), so a typo costs seconds, not a
model load.

Example:
    >>> from mmreason.assets.preflight import check_generation
    >>> check_generation(["subaction"], ["demo"], backend="deterministic")    # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mmreason.assets.preflight.GenerationCheckError: asset 'subaction': unknown asset 'subaction'; did you mean 'subactions'? ...
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mmreason.assets.classes import bundled_classes, read_class_list
from mmreason.assets.io import asset_paths, read_records
from mmreason.assets.prompts import PromptTemplate, load_template
from mmreason.assets.spec import AssetSpec
from mmreason.registry import did_you_mean

class GenerationCheckError(ValueError):
    """One or more problems found before any model loaded; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = (f"{len(self.problems)} problems (nothing was loaded or generated):\n  - "
                       + "\n  - ".join(self.problems))
        super().__init__(message)


@dataclass
class Job:
    """One checked (asset, dataset) pair: its items in order, the selected ones, templates and output files."""

    spec: AssetSpec
    dataset: str
    items: list[dict]
    selected: list[dict]
    templates: dict[str, PromptTemplate]
    paths: dict[str, Path]


def check_generation(assets: Sequence[str], datasets: Sequence[str], *, backend: str = "hf", model: str = "embedded",
                     llm: Any = None, classes: Sequence[str] | None = None,
                     classes_file: str | os.PathLike | None = None, items: Sequence[dict] | None = None,
                     items_file: str | os.PathLike | None = None, only: Sequence[str] = (),
                     prompt_style: str = "completion", prompts_root: str | os.PathLike | None = None,
                     knowledge_root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                     max_attempts: int = 3, batch_size: int = 8, num_frames: int = 8) -> list[Job]:
    """Check a run of ``assets`` x ``datasets`` without loading a model; see the module docstring.

    ``llm`` (an already built backend) skips the backend and model checks. Returns one ``Job`` per pair, in
    order (datasets outer, assets inner); raises ``GenerationCheckError`` listing every problem.
    """
    from mmreason.assets import ASSETS
    from mmreason.assets.paths import knowledge_root as resolve_root

    problems: list[str] = []
    for name, value, least in (("max_attempts", max_attempts, 1), ("batch_size", batch_size, 1),
                               ("num_frames", num_frames, 0)):  # 0 frames: a text-only model sees none
        if int(value) < least:
            problems.append(f"{name} must be >= {least}, got {value}")
    specs = []
    for asset in assets:
        try:
            specs.append(ASSETS.get(asset))
        except KeyError as e:
            problems.append(f"asset {asset!r}: {e.args[0]}")
    if not assets:
        problems.append("no asset given (see `mmreason ls assets`)")
    if not datasets:
        problems.append("no dataset given")
    kinds = {s.items for s in specs}
    if classes_file is not None and specs and "classes" not in kinds:
        problems.append(f"--classes-file {classes_file}: only class assets read it; "
                        f"{', '.join(s.name for s in specs)} run(s) over clips (--items-file)")
    if items_file is not None and specs and "clips" not in kinds:
        problems.append(f"--items-file {items_file}: only clip assets (intentions) read it; "
                        f"{', '.join(s.name for s in specs)} run(s) over class names")
    if llm is None:
        problems += _backend_problems(backend, model, cache_dir)

    root = resolve_root(knowledge_root)
    clip_items = None  # the clip list is the same for every dataset: read and check it once
    if "clips" in kinds:
        clip_items = _clip_items(items, items_file, num_frames, problems)
    jobs = []
    for dataset in datasets:
        if not re.fullmatch(r"\w[\w.-]*", str(dataset)):
            problems.append(f"dataset {dataset!r}: must be a plain folder name (letters, digits, '_', '.', '-')")
            continue
        class_items = None
        for spec in specs:
            if spec.items == "clips":
                pair_items = clip_items
            else:
                if class_items is None:
                    class_items = _class_items(dataset, classes, classes_file, root, problems)
                pair_items = class_items
            templates = {}
            for stage in spec.stages:
                try:
                    templates[stage.name] = load_template(spec.name, stage.name, prompt_style, prompts_root)
                except (FileNotFoundError, ValueError) as e:
                    problems.append(f"asset {spec.name!r}: {e}")
            if pair_items is None:
                continue
            ids = [it["id"] for it in pair_items]
            for name in only:
                if name not in ids:
                    problems.append(f"--only {name!r} is not an item of {spec.name}/{dataset}{did_you_mean(name, ids)}")
            selected = [it for it in pair_items if not only or it["id"] in only]
            jobs.append(Job(spec, str(dataset), pair_items, selected, templates, asset_paths(spec.name, dataset, root)))
    if problems:  # a problem shared by several pairs (a template, a class list) is listed once
        raise GenerationCheckError(list(dict.fromkeys(problems)))
    return jobs


def _class_items(dataset: str, classes, classes_file, root: Path, problems: list[str]) -> list[dict] | None:
    try:
        if classes is not None:
            names = [str(c) for c in classes]
        elif classes_file is not None:
            names = read_class_list(classes_file)
        else:
            names = bundled_classes(dataset, root)
    except (FileNotFoundError, ValueError) as e:
        problems.append(f"dataset {dataset!r}: {e}")
        return None
    return [{"id": c, "class": c, "class_name": c} for c in names]


def _clip_items(items, items_file, num_frames: int, problems: list[str]) -> list[dict] | None:
    """Clip records with their ``observed_clause``; every clip's video is opened and its time range checked
    (``intentions.check_clip_items``)."""
    from mmreason.assets.intentions import check_clip_items, observed_clause

    if items is None:
        if items_file is None:
            problems.append("clip assets (intentions) need --items-file: JSONL of "
                            "{'id', 'video', 'start_s', 'end_s', 'observed'}")
            return None
        if not Path(items_file).is_file():
            problems.append(f"--items-file {items_file}: not found ({Path(items_file).resolve()})")
            return None
        try:
            items = read_records(items_file)
        except ValueError as e:
            problems.append(f"--items-file: {e}")
            return None
        if not items:
            problems.append(f"--items-file {items_file}: no clips in it")
            return None
    source = str(items_file or "items")
    out, seen = [], set()
    for n, clip in enumerate(items, start=1):
        where = f"{source} clip #{n}"
        if not isinstance(clip, dict) or "id" not in clip or "video" not in clip:
            got = sorted(clip) if isinstance(clip, dict) else type(clip).__name__
            problems.append(f"{where}: needs 'id' and 'video' fields, got {got}")
            continue
        clip_id = str(clip["id"])
        if clip_id in seen:
            problems.append(f"{where}: id {clip_id!r} appears twice")
        seen.add(clip_id)
        try:
            [float(clip[k]) for k in ("start_s", "end_s") if clip.get(k) is not None]
        except (TypeError, ValueError):
            problems.append(f"{where} ({clip_id!r}): start_s / end_s must be numbers of seconds, got "
                            f"{clip.get('start_s')!r} / {clip.get('end_s')!r}")
            continue
        observed = list(clip.get("observed", []))
        out.append({**clip, "id": clip_id, "observed": observed, "observed_clause": observed_clause(observed)})
    try:
        check_clip_items(out, num_frames)
    except ValueError as e:  # its message: a summary line, then one line per bad clip
        problems += [f"{source}: {line.strip()}" for line in str(e).splitlines()[1:]] or [f"{source}: {e}"]
    return out


def _backend_problems(backend: str, model: str, cache_dir) -> list[str]:
    """The backend is registered and installed; the model name or path can be found (no model is loaded)."""
    from mmreason.llm.base import check_model
    from mmreason.llm.paths import response_cache_dir
    from mmreason.registry import BACKENDS

    if backend not in BACKENDS:
        return [f"backend {backend!r}: unknown{did_you_mean(backend, BACKENDS.names())} "
                f"Available: {', '.join(BACKENDS.names())}"]
    problems = []
    if backend == "hf" and importlib.util.find_spec("transformers") is None:
        problems.append("backend 'hf' needs the transformers package: pip install transformers")
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            problems.append("backend 'vllm': the vllm package is not installed (pip install 'mmreason[gpu]' on a "
                            "machine with an NVIDIA GPU; on a CPU use --backend hf)")
        else:
            import torch

            if not torch.cuda.is_available():
                problems.append("backend 'vllm' needs a CUDA GPU and none is visible (on a CPU use --backend hf)")
    if backend == "replay":
        cache = response_cache_dir(cache_dir)
        if not cache.is_dir():
            problems.append(f"backend 'replay' serves only from the response cache, and {cache} does not exist "
                            "(--cache-dir or $MMREASON_CACHE)")
    if backend in ("hf", "vllm", "replay"):
        try:
            check_model(model, load=backend != "replay")
        except (ImportError, FileNotFoundError, ValueError) as e:
            problems.append(f"--model {model!r}: {e}" if str(model) not in str(e) else str(e))
    return problems
