"""Turning free LLM text into structured values, with clear failures and recorded retries.

- ``extract_json``: the first JSON object/array in a text (tolerates ```json fences, trailing commas, Python
  literals, and single quotes when the candidate holds no double quotes).
- ``parse_numbered_list``: ``1. a`` / ``1) a`` / ``- a`` / ``* a`` lines.
- ``parse_yaml_like``: ``key: value`` lines and ``key:`` followed by ``- item`` lines.
- ``validate_schema``: a small JSON-schema subset, errors name the path (``$.steps[2]``).
- ``map_to_vocabulary``: exact, then case/spacing-insensitive, then fuzzy (rapidfuzz) match to a label list.
- ``ends_mid_sentence`` / ``drop_unfinished_line`` / ``copied_from``: answers a small model gets wrong in ways a
  format check does not see: a sentence cut off ("... onto the"), an answer that ran into ``max_tokens``, an
  answer that repeats the prompt's few-shot examples instead of answering.
- ``generate_validated`` / ``generate_validated_many``: ask, parse, and retry a bad answer with a new
  ``sample_index`` up to ``max_attempts`` times, recording every attempt (never dropping a failure silently).

Every parser raises ``ParseError`` (a ``ValueError``) with a message that quotes the offending text.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, Callable, Sequence


class ParseError(ValueError):
    """An LLM answer could not be turned into the expected value."""


def _excerpt(text: str, n: int = 120) -> str:
    text = text.strip().replace("\n", "\\n")
    return repr(text[:n] + ("..." if len(text) > n else ""))


# --------------------------------------------------------------------------------------------------- JSON

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)


def _balanced_end(text: str, start: int) -> int:
    """Index one past the bracket that closes ``text[start]``, or -1 when the text ends first (truncated)."""
    stack, in_str, quote, escaped = [], False, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                in_str = False
        elif ch in "\"'":
            # a single quote opens a string only where a JSON value could start (not in "don't")
            if ch == '"' or re.match(r"[\s,:\[{]", text[i - 1] if i > start else " "):
                in_str, quote = True, ch
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}":
            if not stack or ch != stack[-1]:
                return -2  # mismatched bracket: not JSON
            stack.pop()
            if not stack:
                return i + 1
    return -1


def _loads_tolerant(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    fixed = re.sub(r",\s*([\]}])", r"\1", candidate)  # trailing commas
    fixed = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", re.sub(r"\bNone\b", "null", fixed)))
    try:
        return json.loads(fixed)
    except json.JSONDecodeError:
        pass
    if '"' not in fixed:  # only single quotes: safe to swap them
        try:
            return json.loads(fixed.replace("'", '"'))
        except json.JSONDecodeError:
            pass
    raise json.JSONDecodeError("not JSON", candidate, 0)


def extract_json(text: str) -> Any:
    """The first JSON object or array in ``text``; ``ParseError`` when there is none or it is truncated."""
    if not isinstance(text, str):
        raise ParseError(f"expected text, got {type(text).__name__}")
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    truncated = False
    for source in sources:
        for m in re.finditer(r"[\[{]", source):
            end = _balanced_end(source, m.start())
            if end == -1:
                truncated = True
                break  # everything after an unclosed bracket is inside it
            if end < 0:
                continue
            try:
                return _loads_tolerant(source[m.start():end])
            except json.JSONDecodeError:
                continue
    if truncated:
        raise ParseError(f"truncated JSON (a bracket is never closed) in {_excerpt(text)}")
    raise ParseError(f"no JSON object or array found in {_excerpt(text)}")


# ------------------------------------------------------------------------------------------ lists, YAML

_ITEM = re.compile(r"^\s*(?:\d+\s*[.)]|[-*\u2022])\s+(.*\S)\s*$")


def _clean_item(s: str) -> str:
    s = s.strip()
    s = re.sub(r"^\*\*(.*)\*\*$", r"\1", s)  # **bold**
    return s.strip()


def parse_numbered_list(text: str, expected_count: int | None = None) -> list[str]:
    """Items of a ``1. a`` / ``1) a`` / ``- a`` / ``* a`` list, in order; other lines are ignored.

    ``ParseError`` when no item is found, or when ``expected_count`` is given and the count differs.
    """
    items = [_clean_item(m.group(1)) for m in map(_ITEM.match, text.splitlines()) if m]
    items = [s for s in items if s]
    if not items:
        raise ParseError(f"no list items ('1. ...', '- ...') found in {_excerpt(text)}")
    if expected_count is not None and len(items) != expected_count:
        raise ParseError(f"expected {expected_count} list items, got {len(items)}: {items}")
    return items


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def parse_yaml_like(text: str) -> dict[str, str | list[str]]:
    """``{"key": "value", "list key": ["item", ...]}`` from ``key: value`` and ``key:\\n  - item`` blocks.

    Tolerates markdown bold keys and code fences; ``ParseError`` when no key is found.
    """
    out: dict[str, Any] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.strip().startswith(("```", "#")):
            continue
        item = re.match(r"^\s*[-*]\s+(.*\S)\s*$", line)
        if item and current is not None:
            if not isinstance(out[current], list):
                out[current] = [] if out[current] == "" else [out[current]]
            out[current].append(_unquote(item.group(1)))
            continue
        kv = re.match(r"^\s*\**([^:\n]*?[^:\s*])\**\s*:\s*(.*)$", line)
        if kv and not item:
            current = kv.group(1).strip()
            out[current] = _unquote(kv.group(2)) if kv.group(2).strip() else ""
            continue
        # a continuation line: append to a scalar value
        if current is not None and isinstance(out[current], str):
            out[current] = (out[current] + " " + line.strip()).strip()
    if not out:
        raise ParseError(f"no 'key: value' lines found in {_excerpt(text)}")
    return out


# ----------------------------------------------------------------------------------------------- schema

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate_schema(obj: Any, schema: dict, path: str = "$") -> Any:
    """Check ``obj`` against a JSON-schema subset; return it, or raise ``ParseError`` naming the path.

    Supported: ``type`` (object, array, string, integer, number, boolean, null, or a list of them),
    ``required``, ``properties``, ``items``, ``minItems``, ``maxItems``, ``enum``, ``minLength``.
    """
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        unknown = [k for k in kinds if k not in _TYPES]
        if unknown:
            raise ValueError(f"schema at {path}: unsupported type {unknown[0]!r}")
        if not any(_TYPES[k](obj) for k in kinds):
            got = f"{type(obj).__name__} {_excerpt(repr(obj), 60)}"
            raise ParseError(f"{path}: expected {' or '.join(kinds)}, got {got}")
    if "enum" in schema and obj not in schema["enum"]:
        raise ParseError(f"{path}: {obj!r} is not one of {schema['enum']}")
    if isinstance(obj, str) and len(obj) < schema.get("minLength", 0):
        raise ParseError(f"{path}: string shorter than {schema['minLength']} characters: {obj!r}")
    if isinstance(obj, dict):
        missing = [k for k in schema.get("required", []) if k not in obj]
        if missing:
            raise ParseError(f"{path}: missing required key {missing[0]!r} (has {sorted(obj)})")
        for k, sub in schema.get("properties", {}).items():
            if k in obj:
                validate_schema(obj[k], sub, f"{path}.{k}")
    if isinstance(obj, list):
        if len(obj) < schema.get("minItems", 0):
            raise ParseError(f"{path}: expected at least {schema['minItems']} items, got {len(obj)}")
        if "maxItems" in schema and len(obj) > schema["maxItems"]:
            raise ParseError(f"{path}: expected at most {schema['maxItems']} items, got {len(obj)}")
        if "items" in schema:
            for i, v in enumerate(obj):
                validate_schema(v, schema["items"], f"{path}[{i}]")
    return obj


# ------------------------------------------------------------------------------------------- vocabulary

def _norm(s: str) -> str:
    return re.sub(r"[\s_\-]+", " ", s.strip().strip(".\"'").lower()).strip()


def map_to_vocabulary(text: str, vocab: Sequence[str], cutoff: float = 85.0) -> int | None:
    """Index of the label in ``vocab`` that ``text`` names, or None.

    Exact match first, then case/spacing/underscore-insensitive, then the best fuzzy match
    (``rapidfuzz.fuzz.ratio`` on normalised strings, 0-100) scoring at least ``cutoff``.
    """
    if not vocab:
        return None
    try:
        return list(vocab).index(text)
    except ValueError:
        pass
    normed = [_norm(v) for v in vocab]
    target = _norm(text)
    if target in normed:
        return normed.index(target)
    from rapidfuzz import fuzz, process

    best = process.extractOne(target, normed, scorer=fuzz.ratio, score_cutoff=cutoff)
    return None if best is None else int(best[2])


# ------------------------------------------------------------------------------ incomplete or copied answers

# Words a complete sentence of ours does not end with: articles, conjunctions, most prepositions, possessives,
# auxiliaries. Particles that end phrasal verbs ("pick it up", "turn the water on") are left out on purpose.
_DANGLING = frozenset("""a an the and or but nor of to with from into onto at by for as than that which who whose
    while because his her their its my your our this these those is are was were be been has have had will would
    can could should must very""".split())


def ends_mid_sentence(text: str) -> bool:
    """Whether a sentence or phrase stops before it is complete: it ends in an article, a conjunction, a
    preposition or a possessive ("Lowering the glass back onto the."), or in a comma, colon, dash or bracket."""
    t = text.strip().rstrip(".!?\"'").rstrip()
    if not t:
        return True
    if t[-1] in ",;:-\u2013\u2014(/&":
        return True
    words = re.findall(r"[A-Za-z']+", t)
    return bool(words) and words[-1].lower() in _DANGLING


def drop_unfinished_line(text: str) -> str:
    """``text`` without its last line: what is left of an answer cut off by ``max_tokens`` (whose last line is
    unfinished), so a parser sees only complete lines and a missing item shows as a wrong count."""
    return text.rsplit("\n", 1)[0] if "\n" in text else ""


def normalize_words(text: str) -> str:
    """Lower-case words separated by single spaces (punctuation and brackets dropped)."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def copied_from(texts: Sequence[str], reference_lines: Sequence[str], min_words: int = 3,
                similarity: float = 0.8) -> list[str]:
    """The ``texts`` (of at least ``min_words`` words) that copy the reference: they occur word for word in it, or
    they match one of its lines with only a word or two changed (``difflib`` ratio over words >= ``similarity``),
    case and punctuation ignored. Used on answers that repeat a prompt's few-shot examples or instructions,
    possibly with the example's object swapped for the asked one.

    >>> copied_from(["Holding the bow and raising the arm back.", "Aiming at the target."],
    ...             ["Holding the ball and raising the arm back.", "Swinging the arm forward."])
    ['Holding the bow and raising the arm back.']
    """
    import difflib

    lines = [normalize_words(line).split() for line in reference_lines]
    joined = " " + " ".join(" ".join(words) for words in lines) + " "
    out = []
    for t in texts:
        words = normalize_words(t).split()
        if len(words) < min_words:
            continue
        if f" {' '.join(words)} " in joined or any(
                difflib.SequenceMatcher(None, words, line, autojunk=False).ratio() >= similarity for line in lines):
            out.append(t)
    return out


# ------------------------------------------------------------------------------------ validated retries

def generate_validated(backend, build_request: Callable[[int], Any], parse: Callable[[str], Any],
                       max_attempts: int = 3, retry_temperature: float = 0.7) -> tuple[Any, list[dict]]:
    """Ask until ``parse`` accepts the answer: ``(value or None, attempts)``.

    Attempt ``i`` sends ``build_request(i)`` (its ``sample_index`` should be ``i``, so its seed and cache key
    differ). Greedy decoding would repeat the same bad answer, so a retry of a request with temperature 0 is
    sent with ``retry_temperature`` instead. Each attempt is recorded as ``{"sample_index", "temperature",
    "text", "ok", "error"}``; after ``max_attempts`` failures the value is None and every failure is listed.
    Only ``ParseError`` counts as a bad answer; any other exception propagates.
    """
    (result,) = generate_validated_many(backend, [build_request], parse, max_attempts, retry_temperature)
    return result


def generate_validated_many(backend, build_requests: Sequence[Callable[[int], Any]], parse: Callable[[str], Any],
                            max_attempts: int = 3, retry_temperature: float = 0.7) -> list[tuple[Any, list[dict]]]:
    """``generate_validated`` for many items, batched: attempt ``i`` of all still-failing items is one call."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    values: list[Any] = [None] * len(build_requests)
    attempts: list[list[dict]] = [[] for _ in build_requests]
    pending = list(range(len(build_requests)))
    for sample_index in range(max_attempts):
        if not pending:
            break
        requests = []
        for i in pending:
            request = build_requests[i](sample_index)
            if sample_index > 0 and request.sampling.temperature == 0.0:
                request = replace(request, sampling=replace(request.sampling, temperature=retry_temperature))
            requests.append(request)
        generations = backend.generate(requests)
        still = []
        for i, request, gen in zip(pending, requests, generations):
            record = {"sample_index": request.sample_index, "temperature": request.sampling.temperature,
                      "text": gen.text, "ok": True, "error": None}
            try:
                values[i] = parse(gen.text)
            except ParseError as e:
                record.update(ok=False, error=str(e))
                still.append(i)
            attempts[i].append(record)
        pending = still
    return list(zip(values, attempts))
