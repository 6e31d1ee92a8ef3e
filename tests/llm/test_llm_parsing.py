"""Parsing LLM answers: crafted good and bad outputs, schema errors that name the path, vocabulary mapping, and
validated generation with recorded retries."""
from __future__ import annotations

import pytest

from mmreason.llm import DeterministicBackend, Request, SamplingParams
from mmreason.llm.parsing import (ParseError, extract_json, generate_validated, generate_validated_many,
                                  map_to_vocabulary, parse_numbered_list, parse_yaml_like, validate_schema)

SCHEMA = {"type": "object", "required": ["intention", "steps"],
          "properties": {"intention": {"type": "string"},
                         "steps": {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "string"}},
                         "confidence": {"type": "number"}, "kind": {"enum": ["goal", "habit"]}}}


@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}', {"a": 1}),
    ('Sure! Here it is:\n```json\n{"a": [1, 2], "b": "x"}\n```\nHope it helps.', {"a": [1, 2], "b": "x"}),
    ('The answer: {"a": [1, 2,], "b": {"c": true,},} done', {"a": [1, 2], "b": {"c": True}}),
    ("{'a': 'pour water', 'b': None}", {"a": "pour water", "b": None}),
    ('Use {name} as a slot. Answer: ["cut", "stir"]', ["cut", "stir"]),
    ('{"text": "a } inside a string", "n": 2}', {"text": "a } inside a string", "n": 2}),
    ('[{"x": 1}, {"x": 2}] and then {"y": 3}', [{"x": 1}, {"x": 2}]),
])
def test_extract_json_tolerates_common_llm_wrappings(text, expected):
    assert extract_json(text) == expected


@pytest.mark.parametrize("text, message", [
    ("I cannot answer that.", "no JSON object or array"),
    ('Here: {"steps": ["open", "pour"', "truncated JSON"),
    ("", "no JSON object or array"),
    ("{not: json, at all}", "no JSON object or array"),
])
def test_extract_json_rejects_bad_outputs_with_a_clear_error(text, message):
    with pytest.raises(ParseError, match=message):
        extract_json(text)


def test_validate_schema_accepts_and_names_the_failing_path():
    good = {"intention": "make tea", "steps": ["boil", "pour", "steep"], "confidence": 0.8, "kind": "goal"}
    assert validate_schema(good, SCHEMA) is good
    cases = [
        ({"steps": ["a", "b", "c"]}, r"\$: missing required key 'intention'"),
        ({"intention": "x", "steps": ["a", 2, "c"]}, r"\$\.steps\[1\]: expected string, got int"),
        ({"intention": "x", "steps": ["a", "b"]}, r"\$\.steps: expected at least 3 items, got 2"),
        ({"intention": "x", "steps": ["a", "b", "c", "d"]}, r"\$\.steps: expected at most 3 items, got 4"),
        ({"intention": "x", "steps": ["a", "b", "c"], "kind": "wish"}, r"\$\.kind: 'wish' is not one of"),
        ({"intention": "x", "steps": ["a", "b", "c"], "confidence": True}, r"\$\.confidence: expected number"),
        (["not", "an", "object"], r"\$: expected object, got list"),
    ]
    for obj, message in cases:
        with pytest.raises(ParseError, match=message):
            validate_schema(obj, SCHEMA)
    assert validate_schema(3, {"type": "integer"}) == 3
    with pytest.raises(ParseError, match="expected integer"):
        validate_schema(3.5, {"type": "integer"})


def test_parse_numbered_list_styles_and_counts():
    text = "Here are the steps:\n1. Pick up the cup.\n2) **Pour the water.**\n- Drink it\n* Put it down\nThanks!"
    assert parse_numbered_list(text) == ["Pick up the cup.", "Pour the water.", "Drink it", "Put it down"]
    assert parse_numbered_list(" 10. ten\n11. eleven") == ["ten", "eleven"]
    with pytest.raises(ParseError, match="expected 3 list items, got 4"):
        parse_numbered_list(text, expected_count=3)
    with pytest.raises(ParseError, match="no list items"):
        parse_numbered_list("Pick up the cup, then pour the water.")


def test_parse_yaml_like_keys_and_item_blocks():
    text = ("```yaml\n**Objects**: cup, kettle\nSub-actions:\n  - pick up the cup\n  - pour water\n"
            "Intention: 'make tea'\nnote: first line\n  continues here\n```")
    assert parse_yaml_like(text) == {"Objects": "cup, kettle", "Sub-actions": ["pick up the cup", "pour water"],
                                     "Intention": "make tea", "note": "first line continues here"}
    with pytest.raises(ParseError, match="no 'key: value'"):
        parse_yaml_like("just a sentence without structure")


def test_map_to_vocabulary_exact_then_case_then_fuzzy():
    vocab = ["Pour", "pour_water", "ride bike", "brush hair"]
    assert map_to_vocabulary("Pour", vocab) == 0
    assert map_to_vocabulary("pour", vocab) == 0            # case-insensitive before fuzzy
    assert map_to_vocabulary("Pour water.", vocab) == 1     # spacing/underscore/punctuation normalised
    assert map_to_vocabulary("ride a bike", vocab) == 2     # fuzzy
    assert map_to_vocabulary("brush hairs", vocab) == 3
    assert map_to_vocabulary("play the violin", vocab) is None
    assert map_to_vocabulary("ride a bike", vocab, cutoff=99) is None
    assert map_to_vocabulary("x", []) is None


def _steps(text: str) -> list[str]:
    return validate_schema(extract_json(text), {"type": "array", "minItems": 3, "maxItems": 3,
                                                 "items": {"type": "string"}})


def _request(sample_index: int) -> Request:
    return Request(prompt="List three steps as JSON.", sampling=SamplingParams(max_tokens=64),
                   sample_index=sample_index, tag="tea")


def test_generate_validated_retries_with_new_samples_and_records_failures():
    answers = {0: "Sure, the steps are boil and pour.", 1: '["boil", "pour"]', 2: '["boil", "pour", "steep"]'}
    seen = []

    def responder(r: Request) -> str:
        seen.append((r.sample_index, r.sampling.temperature))
        return answers[r.sample_index]

    value, attempts = generate_validated(DeterministicBackend(responder=responder), _request, _steps,
                                         max_attempts=3, retry_temperature=0.7)
    assert value == ["boil", "pour", "steep"]
    # greedy first, then new sample indices at the retry temperature (greedy would repeat itself)
    assert seen == [(0, 0.0), (1, 0.7), (2, 0.7)]
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert "no JSON" in attempts[0]["error"] and attempts[0]["text"] == answers[0]
    assert "at least 3 items" in attempts[1]["error"] and attempts[2]["error"] is None


def test_generate_validated_gives_up_after_max_attempts_with_all_recorded():
    backend = DeterministicBackend(responder=lambda r: f"no json here ({r.sample_index})")
    value, attempts = generate_validated(backend, _request, _steps, max_attempts=4)
    assert value is None and backend.calls == 4
    assert [a["sample_index"] for a in attempts] == [0, 1, 2, 3]
    assert all(not a["ok"] and "no JSON" in a["error"] for a in attempts)
    assert attempts[3]["text"] == "no json here (3)"


def test_generate_validated_many_batches_each_round():
    calls = []

    class Recording(DeterministicBackend):
        def generate(self, requests):
            calls.append([(r.tag, r.sample_index) for r in requests])
            return super().generate(requests)

    good = {"a": '["1", "2", "3"]', "b": "oops", "c": '["x", "y", "z"]'}
    backend = Recording(responder=lambda r: good[r.tag] if r.tag != "b" or r.sample_index < 1 else '["p","q","r"]')
    builders = [lambda i, t=t: Request(prompt=t, sample_index=i, tag=t) for t in "abc"]
    results = generate_validated_many(backend, builders, _steps, max_attempts=3)
    assert calls == [[("a", 0), ("b", 0), ("c", 0)], [("b", 1)]]
    assert [v for v, _ in results] == [["1", "2", "3"], ["p", "q", "r"], ["x", "y", "z"]]
    assert [len(a) for _, a in results] == [1, 2, 1]
