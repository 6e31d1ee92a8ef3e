"""Label semantics for CORM (arXiv 2303.08463) and VS-TransGRU (arXiv 2307.03918): a one-sentence description per
class and its embedding.

Both papers use label semantics (CORM: semantic co-occurrence from label embeddings; VS-TransGRU: semantic
features from label embeddings); neither publishes an LLM prompt, so describing labels with an LLM is our
choice (the class name alone is embedded too, so a method can use either). Record:
``{"id", "class", "description"}``; embeddings of ``[class name, description]`` per class are written beside
the records.
"""
from __future__ import annotations

import re

from mmreason.assets.spec import AssetSpec, Stage
from mmreason.llm.parsing import ParseError, ends_mid_sentence


def parse_description(text: str, variables: dict) -> str:
    text = re.sub(r"^Description:\s*", "", text.strip())
    line = text.split("\n", 1)[0].strip().strip("\"'")
    if len(line.split()) < 4:
        raise ParseError(f"description too short: {line!r}")
    if ends_mid_sentence(line):
        raise ParseError(f"description ends mid-sentence: {line!r}")
    return line if line[-1] in ".!?" else line + "."


def _collect(record: dict, results: list) -> None:
    (_, description), = results
    record["description"] = description


LABEL_SEMANTICS = AssetSpec(
    name="label_semantics",
    version=1,
    description="CORM / VS-TransGRU: a one-sentence description per class, embedded with its name",
    stages=(Stage("description", parse=parse_description, collect=_collect, temperature=0.0, max_tokens=64,
                  stop_completion=("\n",)),),
    embed_texts=lambda record: [record["class"], record["description"]],
)
