"""Asset specs: what an LLM/VLM text asset asks, how answers are parsed, and what the curated record holds.

An asset runs one or more *stages* over its items (class names, or clips for ICVL intentions). A stage turns
the item's record into one or more requests (its *expansion*), parses each answer (a parse error triggers a
retry with a new sample index) and folds the parsed values back into the record, so a later stage can build
on an earlier one (STDD: knowledge graph -> one continuation per triple).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Stage:
    """One prompt template applied to every item.

    Attributes:
        name: the template stem under ``prompts/<asset>/`` (``<name>.completion.txt`` / ``<name>.chat.yaml``).
        parse: ``(text, variables) -> value``; raises ``mmreason.llm.parsing.ParseError`` on a bad answer.
            For completion templates ``text`` starts with the template's priming line (e.g. ``"1."``).
        expand: ``record -> [variables, ...]``: one request per entry (default: one request per item).
        collect: ``(record, [(variables, value), ...]) -> None``: writes the parsed values into the record.
        temperature / max_tokens / stop_completion: sampling for this stage (stop strings apply to completion
            prompts, where a few-shot prompt would otherwise run on into a new example).
        with_images: the item's video frames go with the request (VLM stages).
    """

    name: str
    parse: Callable[[str, dict], Any]
    collect: Callable[[dict, list], None]
    expand: Callable[[dict], list[dict]] = lambda record: [dict(record)]
    temperature: float = 0.0
    max_tokens: int = 256
    stop_completion: tuple[str, ...] = ("\n\n",)
    with_images: bool = False


@dataclass(frozen=True)
class AssetSpec:
    """A named text asset: its stages, the version of its parsers, and which texts get embedded.

    Attributes:
        name: asset name (``knowledge/<dataset>/<name>.jsonl``).
        version: bump when parsing or record layout changes (recorded in the manifest).
        description: one line for ``mmreason ls assets``.
        stages: run in order; each stage sees the fields the previous ones collected.
        items: ``"classes"`` (one item per class name) or ``"clips"`` (``{"id", "video", ...}`` records).
        embed_texts: ``record -> [text, ...]`` embedded after generation (None = nothing to embed).
        variables: extra template variables from the generation options (e.g. ``num_steps``).
    """

    name: str
    version: int
    description: str
    stages: tuple[Stage, ...]
    items: str = "classes"
    embed_texts: Callable[[dict], list[str]] | None = None
    variables: Callable[[dict], dict] = field(default=lambda options: {})
