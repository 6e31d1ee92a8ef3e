"""STDD action semantic knowledge graph (ASKG) and its prompt continuations (arXiv 2412.09895, Sec. 3.2).

Stage 1 (``graph``, greedy as the released ``extended_text_prompt.py``): per class, 5-10 relevant objects,
object-object triples, action-object triples, ordered sub-actions and action-action triples ("starts with",
"precedes"). Stage 2 (``continuation``, temperature 0.7 as ``ASKG_text_prompt.py``): every triple rewritten as a
continuation of "This is an example of {class}, ..." ("where ...", "which involves ...", "starting with ...").
The official pipeline used gpt-3.5-turbo with one-shot prompts that are not published verbatim; the prompts in
``prompts/action_graph/`` are ours. When an answer lists no valid action-action triple, they are derived from
the ordered sub-actions (first "starts with", then consecutive "precedes") and the record says so in
``act_rel_source`` ("derived" rather than "llm").

:func:`build_prompt_sets` is STDD's prompt-set builder (``text2feature.py``): per template, the class name and
the class name followed by each continuation, deduplicated; :func:`pad_cycle` pads sets to equal size by
cycling, as the released feature builder does.

Record: ``{"id", "class", "obj_en_li", "obj_rel_triples", "act_obj_triples", "sub_act_en_li",
"act_rel_triples", "act_rel_source", "xprompt_oo", "xprompt_ao", "xprompt_aa"}`` with triples as
``[head, relation, tail]`` lists (the official YAML writes them as ``"<head, relation, tail>"``).
"""
from __future__ import annotations

import re

from mmreason.assets.spec import AssetSpec, Stage
from mmreason.llm.parsing import ParseError, ends_mid_sentence

MIN_OBJECTS, MAX_OBJECTS = 5, 10
ACTION_RELATIONS = ("starts with", "precedes")

# Action templates in the style of STDD's classes_label_<ds>.yml (the official list can be imported with
# mmreason.assets.importers.read_stdd_label_file). Eight are used, as STDD's num_templates=8.
DEFAULT_TEMPLATES = (
    "a video of a person {}.",
    "a video of action {}.",
    "a human action of {}.",
    "a person is {}.",
    "a clip of someone {}.",
    "an example of {}.",
    "a demonstration of {}.",
    "this video is related to {}.",
)

_SECTIONS = {
    "objects": "obj_en_li",
    "object relations": "obj_rel_triples",
    "action-object relations": "act_obj_triples",
    "action object relations": "act_obj_triples",
    "sub-actions": "sub_act_en_li",
    "subactions": "sub_act_en_li",
    "action relations": "act_rel_triples",
}


def parse_triple(text: str) -> list[str] | None:
    """``"<a, rel, b>"`` (brackets optional) -> ``[a, rel, b]``; extra commas stay in the relation."""
    text = text.strip().strip("-*").strip()
    m = re.search(r"<([^<>]*)>", text)
    body = m.group(1) if m else text
    parts = [p.strip().strip("\"'") for p in body.split(",")]
    if len(parts) < 3 or not all(parts):
        return None
    return [parts[0], ", ".join(parts[1:-1]), parts[-1]]


def _split_sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        head, sep, rest = line.partition(":")
        key = _SECTIONS.get(head.strip().strip("*#").strip().lower()) if sep else None
        if key is not None and not line.startswith(("-", "*", "<")):
            current = key
            sections.setdefault(current, [])
            if rest.strip():
                sections[current].append(rest.strip())
        elif current is not None:
            sections[current].append(line)
    return sections


def _items(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = re.sub(r"^(\d+[.)]|[-*])\s*", "", line).strip()
        if line:
            out.append(line)
    return out


def parse_graph(text: str, variables: dict) -> dict:
    """Parse a stage-1 answer into ASKG fields; raise ParseError when a required part is missing."""
    class_name = variables["class_name"]
    sections = _split_sections(text)
    objects_text = ", ".join(_items(sections.get("obj_en_li", [])))
    objects = []
    for obj in (o.strip().strip(".").lower() for o in objects_text.split(",")):
        if obj and obj not in objects:
            objects.append(obj)
    if len(objects) < MIN_OBJECTS:
        raise ParseError(f"expected {MIN_OBJECTS}-{MAX_OBJECTS} objects, got {len(objects)}: {objects}")
    objects = objects[:MAX_OBJECTS]

    def triples(key: str) -> list[list[str]]:
        found = [parse_triple(line) for line in _items(sections.get(key, []))]
        return [t for t in found if t is not None]

    obj_rel, act_obj = triples("obj_rel_triples"), triples("act_obj_triples")
    subactions = [s.strip().rstrip(".") for s in _items(sections.get("sub_act_en_li", []))]
    subactions = [s for i, s in enumerate(subactions) if s and s not in subactions[:i]]
    if not obj_rel:
        raise ParseError("no object-object triples <object, relation, object>")
    if not act_obj:
        raise ParseError("no action-object triples <action, relation, object>")
    if len(subactions) < 2:
        raise ParseError(f"expected at least 2 ordered sub-actions, got {subactions}")
    unfinished = [s for s in subactions if ends_mid_sentence(s)]
    if unfinished:
        raise ParseError(f"sub-action ends mid-sentence: {unfinished[0]!r}")
    act_rel = [t for t in triples("act_rel_triples") if t[1].lower() in ACTION_RELATIONS]
    source = "llm"
    if not act_rel:
        act_rel, source = derive_action_relations(class_name, subactions), "derived"
    return {"obj_en_li": objects, "obj_rel_triples": obj_rel, "act_obj_triples": act_obj,
            "sub_act_en_li": subactions, "act_rel_triples": act_rel, "act_rel_source": source}


def derive_action_relations(class_name: str, subactions: list[str]) -> list[list[str]]:
    """``<class, starts with, s1>``, ``<s1, precedes, s2>``, ... from ordered sub-actions."""
    rel = [[class_name, "starts with", subactions[0]]]
    rel += [[a, "precedes", b] for a, b in zip(subactions, subactions[1:])]
    return rel


def _collect_graph(record: dict, results: list) -> None:
    (_, graph), = results
    record.update(graph)


# -------------------------------------------------------------------------------------- stage 2

_KINDS = (("xprompt_oo", "obj_rel_triples"), ("xprompt_ao", "act_obj_triples"), ("xprompt_aa", "act_rel_triples"))


def _expand_triples(record: dict) -> list[dict]:
    out = []
    for kind, key in _KINDS:
        for head, relation, tail in record[key]:
            out.append({**record, "kind": kind, "head": head, "relation": relation, "tail": tail})
    return out


def parse_continuation(text: str, variables: dict) -> str:
    """First line of the answer, without a repeated "This is an example of X," and without the final period."""
    line = text.split("\n", 1)[0] if text.startswith("Phrase:") else text.strip().split("\n", 1)[0]
    line = re.sub(r"^Phrase:\s*", "", line).strip().strip("\"'")
    line = re.sub(r"^this is an example of [^,]*,\s*", "", line, flags=re.IGNORECASE).strip()
    line = line.rstrip(".").strip()
    if not line:
        raise ParseError("empty continuation")
    if len(line.split()) > 40:
        raise ParseError(f"continuation too long ({len(line.split())} words)")
    if line.lower() == variables["class_name"].lower():
        raise ParseError("continuation only repeats the class name")
    if ends_mid_sentence(line):
        raise ParseError(f"continuation ends mid-sentence: {line!r}")
    return line


def _collect_continuations(record: dict, results: list) -> None:
    for kind, _ in _KINDS:
        seen: list[str] = []
        for variables, phrase in results:
            if variables["kind"] == kind and phrase not in seen:
                seen.append(phrase)
        record[kind] = seen


ACTION_GRAPH = AssetSpec(
    name="action_graph",
    version=1,
    description="STDD: action semantic knowledge graph per class and its prompt continuations",
    stages=(
        Stage("graph", parse=parse_graph, collect=_collect_graph, temperature=0.0, max_tokens=224,
              stop_completion=("\n\n", "\nAction:")),
        Stage("continuation", parse=parse_continuation, collect=_collect_continuations, expand=_expand_triples,
              temperature=0.7, max_tokens=32, stop_completion=("\n",)),
    ),
    embed_texts=lambda r: [f"{r['class']}, {x}" for k in ("xprompt_oo", "xprompt_ao", "xprompt_aa") for x in r[k]],
)


def build_prompt_sets(records: list[dict], templates: tuple[str, ...] | list[str] = DEFAULT_TEMPLATES,
                      num_templates: int = 8) -> list[list[str]]:
    """STDD prompt sets: per class, for each template, ``tpl(c)`` and ``tpl(c + ", " + x)`` for every continuation
    x (object-object, action-object, action-action), deduplicated in order.

    Returns one list of prompts per record (unequal lengths; see :func:`pad_cycle`).
    """
    sets = []
    for r in records:
        name = r.get("class") or r["label"]
        continuations = [x for k in ("xprompt_oo", "xprompt_ao", "xprompt_aa") for x in r.get(k, [])]
        prompts: list[str] = []
        for tpl in list(templates)[:num_templates]:
            for text in [name] + [f"{name}, {x}" for x in continuations]:
                p = tpl.format(text)
                if p not in prompts:
                    prompts.append(p)
        sets.append(prompts)
    return sets


def pad_cycle(prompt_sets: list[list[str]]) -> list[list[str]]:
    """Pad every set to the longest one by cycling its own prompts (STDD stores [K, P, D] features)."""
    longest = max(len(s) for s in prompt_sets)
    return [[s[i % len(s)] for i in range(longest)] for s in prompt_sets]
