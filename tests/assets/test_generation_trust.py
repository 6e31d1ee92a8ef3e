"""Asset generation you can trust: the exit status and the manifest name every item without a record (also after
``--only`` reruns), rejected answers (copies of the prompt's examples, unfinished sentences, answers cut by
max_tokens) are retried, every model-free check runs before a model loads, one deferred model load serves
several assets, progress advances per request, the script is the CLI, and no state depends on the working
directory. The ``isolated_state`` fixture (conftest) points MMREASON_CACHE / MMREASON_KNOWLEDGE at the test's
own folders."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmreason.assets.build import generate_assets, generate_many
from mmreason.assets.io import load_assets, load_manifest
from mmreason.assets.preflight import GenerationCheckError
from mmreason.cli.main import main
from mmreason.llm import DeterministicBackend
from mmreason.llm.base import resolve_model_identity

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["ride bike", "shoot bow", "climb stairs"]


def good(request) -> str:
    c = request.tag
    return f" Getting ready to {c}.\n2. Doing the {c} movement.\n3. Finishing the {c}."


def quiet(**kw):
    return {"embed": False, "progress": False, "echo": lambda s: None, **kw}


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------ exit status and manifest

def prepare_cache(classes, responder, **kw):
    """Answers of the CLI's ``--backend deterministic`` (model id 'deterministic', revision 'v1') in the cache."""
    generate_assets("subactions", "toy", classes=classes, llm=DeterministicBackend(responder=responder),
                    knowledge_root=kw.pop("knowledge_root", "scratch_unused"), **quiet(**kw))


def test_missing_items_make_the_run_fail_and_stay_in_the_manifest_after_only_reruns(capsys, tmp_path,
                                                                                      isolated_state):
    classes_file = tmp_path / "classes.txt"
    classes_file.write_text("\n".join(CLASSES) + "\n")
    # 'shoot bow' and 'climb stairs' never parse (max_attempts=1); 'ride bike' does
    prepare_cache(CLASSES, lambda r: good(r) if r.tag == "ride bike" else " no list", max_attempts=1,
                  knowledge_root=tmp_path / "scratch")
    args = ["generate", "subactions", "--dataset", "toy", "--backend", "deterministic", "--classes-file",
            str(classes_file), "--max-attempts", "1", "--no-embed"]
    code, out, err = cli(capsys, *args)
    assert code == 1                                       # before: 0, whatever failed
    assert "2 items have no record: 'shoot bow', 'climb stairs'" in err and "--allow-failures" in err
    assert json.loads(out)["missing"] == ["shoot bow", "climb stairs"]
    code, _, err = cli(capsys, *args, "--allow-failures")
    assert code == 0 and "'shoot bow', 'climb stairs'" in err   # still named

    # an --only rerun fixes 'shoot bow': 'climb stairs' is still missing, and the manifest still says why
    prepare_cache(["shoot bow"], good, knowledge_root=tmp_path / "scratch", force=True)
    code, out, err = cli(capsys, *args, "--only", "shoot bow")
    assert code == 1 and json.loads(out)["missing"] == ["climb stairs"] and "'climb stairs'" in err
    manifest = load_manifest("subactions", "toy")
    assert manifest["missing"] == ["climb stairs"]
    assert [f["id"] for f in manifest["failures"]] == ["climb stairs"]    # before: [] (it vanished)
    assert manifest["failures"][0]["failed_requests"][0]["attempts"][0]["text"] == " no list"
    assert [r["id"] for r in load_assets("subactions", "toy")] == ["ride bike", "shoot bow"]

    prepare_cache(["climb stairs"], good, knowledge_root=tmp_path / "scratch", force=True)
    code, out, _ = cli(capsys, *args, "--only", "climb stairs")
    assert code == 0 and json.loads(out)["missing"] == []
    assert load_manifest("subactions", "toy")["failures"] == []


def test_a_failed_forced_regeneration_keeps_the_earlier_record(capsys, tmp_path, isolated_state):
    classes_file = tmp_path / "classes.txt"
    classes_file.write_text("\n".join(CLASSES) + "\n")
    args = ["generate", "subactions", "--dataset", "toy", "--backend", "deterministic", "--classes-file",
            str(classes_file), "--max-attempts", "1", "--no-embed"]
    prepare_cache(CLASSES, good, knowledge_root=tmp_path / "scratch")
    assert cli(capsys, *args)[0] == 0
    before = {r["id"]: r for r in load_assets("subactions", "toy")}
    # the forced rerun of 'climb stairs' gets an answer that does not parse
    prepare_cache(["climb stairs"], lambda r: " no list", knowledge_root=tmp_path / "scratch", force=True,
                  max_attempts=1)
    code, out, err = cli(capsys, *args, "--only", "climb stairs")
    assert code == 1 and "failed to regenerate (earlier record kept): 'climb stairs'" in err
    assert json.loads(out)["stale"] == ["climb stairs"] and json.loads(out)["missing"] == []
    after = {r["id"]: r for r in load_assets("subactions", "toy")}
    assert after == before                             # before the fix: 'climb stairs' was dropped
    manifest = load_manifest("subactions", "toy")
    assert manifest["stale"] == ["climb stairs"] and [f["id"] for f in manifest["failures"]] == ["climb stairs"]


# ------------------------------------------------------------------------------------- rejected answers

EXAMPLE_COPY = (" Holding the ball and raising the arm back.\n2. Swinging the arm forward and releasing the ball."
                "\n3. Following through as the ball flies away.")
SWAPPED_COPY = (" Holding the bow and raising the arm back.\n2. Swinging the arm forward and releasing the bow."
                "\n3. Aiming at the target.")


@pytest.mark.parametrize("first_answer, why", [
    (EXAMPLE_COPY, "copies the prompt's examples"),
    (SWAPPED_COPY, "copies the prompt's examples"),     # the example with the object swapped, 2 of 3 lines
    (" Holding the bow and raising the arm.\n2. Drawing the string.\n3. Releasing the arrow.",
     "copies the prompt's examples"),                   # one sentence copied (one word dropped, one swapped)
    (" Getting ready.\n2. Doing the main movement.\n3. Finishing.", "copies the prompt's examples"),  # instructions
    (" Picking up the bow.\n2. Drawing the string to the.\n3. Releasing the arrow.", "ends mid-sentence"),
    (" Picking up the bow.\n2. Drawing the string.\n3. Releasing the arrow towards the target and then " + "very " * 90
     + "far", "reached max_tokens=96"),                # cut by max_tokens: its unfinished last line is dropped
])
def test_rejected_answers_are_retried_and_recorded(first_answer, why):
    def answer(request):
        return first_answer if request.sample_index == 0 else good(request)

    summary = generate_assets("subactions", "toy", classes=["shoot bow"], llm=DeterministicBackend(responder=answer),
                              **quiet())
    assert summary["failed"] == 0 and summary["generated"] == 2          # before: 1, the bad answer accepted
    (record,) = load_assets("subactions", "toy")
    assert record["subactions"][0] == "Getting ready to shoot bow."
    (retry,) = load_manifest("subactions", "toy")["retried"]["shoot bow"]
    assert why in retry["attempts"][0]["error"]


def test_a_class_that_is_itself_an_example_may_repeat_it():
    summary = generate_assets("subactions", "toy", classes=["throw a ball"],
                              llm=DeterministicBackend(responder=lambda r: EXAMPLE_COPY), **quiet())
    assert summary["failed"] == 0 and summary["generated"] == 1


def test_the_answer_lead_the_prompt_wrote_is_not_a_copy():
    from mmreason.assets.build import _reject_copies
    from mmreason.assets.prompts import load_template
    from mmreason.llm.parsing import ParseError

    template = load_template("intentions", "intention")
    assert template.answer_lead == "The person intends to"
    assert "The person intends to" not in template.own_lines
    _reject_copies("The person intends to make soup.", template, {})    # before: rejected (0.8 like the lead)
    with pytest.raises(ParseError, match="copies the prompt"):          # the question itself is still a copy
        _reject_copies("The person intends to: what is the person ultimately trying to accomplish?", template, {})
    subactions = load_template("subactions", "subactions")
    assert subactions.answer_lead == "" and subactions.own_lines[-1] != ""   # "1." leaves the examples intact


def test_single_sentence_assets_reject_unfinished_and_truncated_answers():
    answers = {0: " A person grips the racket and", 1: " A person grips the racket and hits the ball " + "hard " * 70}

    def answer(request):
        return answers.get(request.sample_index, " A person swings a racket at a ball.")

    summary = generate_assets("label_semantics", "toy", classes=["tennis swing"],
                              llm=DeterministicBackend(responder=answer), **quiet())
    assert summary["failed"] == 0
    (record,) = load_assets("label_semantics", "toy")
    assert record["description"] == "A person swings a racket at a ball."
    errors = [a["error"] for a in load_manifest("label_semantics", "toy")["retried"]["tennis swing"][0]["attempts"]]
    assert "ends mid-sentence" in errors[0] and "max_tokens=64" in errors[1]


# --------------------------------------------------------------------------- checks before any model loads

@pytest.fixture
def counting_backend(monkeypatch):
    """A registered backend ``counting`` that records each build (a model load) and answers well."""
    from mmreason.registry import BACKENDS

    builds = []

    def factory(model, **kwargs):
        builds.append(model)
        model_id, revision = resolve_model_identity(model)
        return DeterministicBackend(responder=lambda r: good(r) if r.template_id.startswith("subactions")
                                    else f" A person does the {r.tag} movement with care.",
                                    model_id=model_id, revision=revision)

    monkeypatch.setitem(BACKENDS._items, "counting", factory)
    return builds


def test_every_model_free_problem_is_listed_before_a_model_loads(tmp_path, counting_backend, real_video_paths):
    items = tmp_path / "clips.jsonl"
    bikes = str(real_video_paths["bikes"])
    items.write_text("\n".join(json.dumps(c) for c in [
        {"id": "a", "video": str(tmp_path / "absent.mp4")},
        {"id": "b", "video": bikes, "start_s": 2.0, "end_s": 999.0},
        {"id": "c", "video": bikes, "start_s": 3.0, "end_s": 1.0},
        {"video": bikes}]) + "\n")
    with pytest.raises(GenerationCheckError) as e:
        generate_many(["subactions", "intentions", "label_semantic"], ["demo", "hmdb5"], backend="counting",
                      items_file=items, only=["ride bike"], max_attempts=0, **quiet())
    problems = e.value.problems
    assert counting_backend == []                                     # nothing was built
    expected = ["max_attempts must be >= 1", "'label_semantic'; did you mean 'label_semantics'",
                "clip #4: needs 'id' and 'video'", "clip 'a': ", "absent.mp4: video file not found",
                "clip 'b': ends at 999.00 s", "clip 'c': end_s (1.0) must be after start_s (3.0)",
                "dataset 'hmdb5': no class list", "did you mean 'hmdb51'"]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert all("\n" not in p for p in problems)                       # one line each
    assert any("--only 'ride bike' is not an item of intentions/demo" in p for p in problems)
    assert not any("of subactions/demo" in p for p in problems)         # a demo class


def test_backend_and_model_checks_name_the_input(monkeypatch, tmp_path):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))
    for kwargs, text in [({"backend": "vllm"}, "the vllm package is not installed"),
                         ({"backend": "hf", "model": "./my-model"}, "model path './my-model' not found"),
                         ({"backend": "hf", "model": str(tmp_path)}, "has no config.json"),
                         ({"backend": "vlm"}, "did you mean 'vllm'"),
                         ({"backend": "replay", "cache_dir": tmp_path / "none"}, "does not exist")]:
        with pytest.raises(GenerationCheckError, match=text):
            generate_assets("subactions", "demo", **kwargs, **quiet())


def test_one_deferred_model_load_for_several_assets_and_none_when_cached(counting_backend):
    summaries = generate_many(["subactions", "label_semantics"], ["demo"], backend="counting", model="embedded",
                              **quiet())
    assert [s["missing"] for s in summaries] == [[], []] and len(counting_backend) == 1
    again = generate_many(["subactions", "label_semantics"], ["demo"], backend="counting", model="embedded", **quiet())
    assert sum(s["generated"] for s in again) == 0 and len(counting_backend) == 1   # all cached: not built


# ----------------------------------------------------------------------------------------------- progress

def test_progress_advances_per_request_within_a_batch(monkeypatch):
    import mmreason.assets.build as build

    bars = []
    real = build._progress
    monkeypatch.setattr(build, "_progress", lambda *a: bars.append(real(a[0], a[1], False)) or bars[-1])
    seen = []

    class Watching(DeterministicBackend):
        def generate(self, requests):
            out = []
            for r in requests:                 # answers one at a time, like rows finishing in an HF batch
                seen.append(bars[-1].n)
                out += super().generate([r])
            return out

    generate_assets("subactions", "toy", classes=[f"action {i}" for i in range(6)], batch_size=3,
                    llm=Watching(responder=good), **quiet())
    assert seen == [0, 1, 2, 3, 4, 5]        # before: [0, 0, 0, 3, 3, 3] (the bar moved once per batch)
    assert bars[-1].n == bars[-1].total == 6


# ------------------------------------------------------------------------------------ script = CLI alias

def test_generate_script_is_the_cli(tmp_path):
    args = ["subaction", "label_semantics", "--dataset", "demo", "hmdb5", "--backend", "deterministic"]
    runs = [subprocess.run(cmd + args, capture_output=True, text=True, cwd=tmp_path, timeout=120)
            for cmd in ([sys.executable, str(REPO / "scripts" / "generate_assets.py")],
                        [sys.executable, "-m", "mmreason.cli.main", "generate"])]
    assert runs[0].returncode == runs[1].returncode == 2
    assert runs[0].stderr == runs[1].stderr and "did you mean 'subactions'" in runs[0].stderr
    assert "did you mean 'hmdb51'" in runs[0].stderr


# --------------------------------------------------------------------- state independent of the cwd

def test_files_go_where_the_environment_says_not_to_the_working_directory(capsys, tmp_path, isolated_state,
                                                                         monkeypatch):
    from mmreason.assets.paths import knowledge_root, shipped_dir

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    prepare_cache(["brush hair", "ride bike", "shoot bow", "climb stairs"], good, knowledge_root=tmp_path / "s")
    code, out, _ = cli(capsys, "generate", "subactions", "--dataset", "demo", "--backend", "deterministic",
                       "--no-embed")
    assert code == 0 and json.loads(out)["cached"] == 4
    assert (isolated_state["knowledge"] / "demo" / "subactions.jsonl").is_file()   # before: ./knowledge/demo/...
    assert any((isolated_state["cache"] / "llm_responses").rglob("*.json"))       # before: ./knowledge/.llm_cache
    assert list(elsewhere.iterdir()) == []
    assert len(load_assets("subactions", "demo")) == 4          # readers resolve the same root
    monkeypatch.delenv("MMREASON_KNOWLEDGE")
    assert knowledge_root() == REPO / "knowledge"               # a source checkout: its own knowledge/ folder
    assert knowledge_root(tmp_path / "k") == tmp_path / "k"
    assert shipped_dir("prompts") == REPO / "prompts"
