"""Task-Adapter++ sub-action descriptions (arXiv 2505.06002, Sec. 3 "sub-action descriptions").

For each class an LLM writes exactly S (default 3, as in the released ``corpus/classes_<ds>.yml``) sub-action
sentences in chronological order. The paper does not publish its prompt or LLM; the few-shot prompt in
``prompts/subactions/`` is ours.

Record: ``{"id": class, "class": class, "subactions": [S sentences]}``.
"""
from __future__ import annotations

import re

from mmreason.assets.spec import AssetSpec, Stage
from mmreason.llm.parsing import ParseError, ends_mid_sentence, parse_numbered_list


def clean_sentence(text: str) -> str:
    """Trim, drop surrounding quotes, capitalise, end with a period."""
    text = re.sub(r"\s+", " ", text).strip().strip("\"'").strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def parse_subactions(text: str, variables: dict) -> list[str]:
    num_steps = int(variables["num_steps"])
    items = [s for s in parse_numbered_list(text) if clean_sentence(s)]
    unfinished = [s for s in items if ends_mid_sentence(s)]
    if unfinished:
        raise ParseError(f"sub-action ends mid-sentence: {unfinished[0]!r}")
    items = [clean_sentence(s) for s in items]
    if len(items) != num_steps:
        raise ParseError(f"expected exactly {num_steps} sub-actions, got {len(items)}: {items}")
    if len({s.lower() for s in items}) != len(items):
        raise ParseError(f"sub-actions repeat themselves: {items}")
    return items


def _collect(record: dict, results: list) -> None:
    (_, subactions), = results
    record["subactions"] = subactions


SUBACTIONS = AssetSpec(
    name="subactions",
    version=1,
    description="Task-Adapter++: S chronologically ordered sub-action sentences per class",
    stages=(Stage("subactions", parse=parse_subactions, collect=_collect, temperature=0.0, max_tokens=96),),
    embed_texts=lambda record: list(record["subactions"]),
    variables=lambda options: {"num_steps": int(options.get("num_steps", 3))},
)
