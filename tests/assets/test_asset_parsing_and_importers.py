"""Asset parsers on crafted answers, prompt-set building, class-list readers and the official-format importers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmreason.assets.action_graph import (build_prompt_sets, derive_action_relations, pad_cycle, parse_continuation,
                                          parse_graph, parse_triple)
from mmreason.assets.classes import bundled_classes, read_class_list
from mmreason.assets.importers import (import_stdd, import_task_adapter_pp, read_stdd_askg, read_stdd_label_file,
                                       read_task_adapter_pp_corpus)
from mmreason.assets.io import load_assets
from mmreason.assets.prompts import load_template
from mmreason.assets.subactions import parse_subactions
from mmreason.llm.parsing import ParseError

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference is not present")


def test_parse_subactions_exact_count_and_cleanup():
    assert parse_subactions("1. take the brush\n2) brush from the roots\n3. reach the ends", {"num_steps": 3}) == [
        "Take the brush.", "Brush from the roots.", "Reach the ends."]
    with pytest.raises(ParseError, match="exactly 3"):
        parse_subactions("1. only\n2. two", {"num_steps": 3})
    with pytest.raises(ParseError, match="repeat"):
        parse_subactions("1. a step\n2. a step\n3. b", {"num_steps": 3})


def test_parse_graph_and_derived_relations():
    text = ("Objects: bow, arrow, target, hand, string\nObject relations:\n- <arrow, rests on, bow>\n"
            "Action-object relations:\n- <shoot bow, uses, bow>\nSub-actions:\n- nock the arrow\n- draw the string\n"
            "- release\n")
    g = parse_graph(text, {"class_name": "shoot bow"})
    assert g["obj_en_li"] == ["bow", "arrow", "target", "hand", "string"]
    assert g["act_rel_source"] == "derived"
    assert g["act_rel_triples"] == derive_action_relations("shoot bow", ["nock the arrow", "draw the string", "release"])
    assert g["act_rel_triples"][1] == ["nock the arrow", "precedes", "draw the string"]
    with pytest.raises(ParseError, match="objects"):
        parse_graph(text.replace("target, hand, string", ""), {"class_name": "shoot bow"})
    with pytest.raises(ParseError, match="object-object"):
        parse_graph(text.replace("- <arrow, rests on, bow>\n", ""), {"class_name": "shoot bow"})
    assert parse_triple("- <hairbrush, used for, brushing, hair>") == ["hairbrush", "used for, brushing", "hair"]
    assert parse_triple("nothing here") is None


def test_parse_continuation():
    v = {"class_name": "drink beer"}
    assert parse_continuation("Phrase: where beer is poured.\nAction: x", v) == "where beer is poured"
    assert parse_continuation("This is an example of drink beer, which uses a glass.", v) == "which uses a glass"
    with pytest.raises(ParseError):
        parse_continuation("Phrase:   ", v)


def test_prompt_sets_follow_stdd_text2feature():
    records = [{"class": "kick", "xprompt_oo": ["where a foot hits a ball"], "xprompt_ao": ["which involves a ball"],
                "xprompt_aa": []},
               {"class": "wave", "xprompt_oo": [], "xprompt_ao": [], "xprompt_aa": []}]
    sets = build_prompt_sets(records, ["a video of {}.", "a photo of {}.", "a video of {}."], num_templates=3)
    assert sets[0] == ["a video of kick.", "a video of kick, where a foot hits a ball.",
                       "a video of kick, which involves a ball.", "a photo of kick.",
                       "a photo of kick, where a foot hits a ball.", "a photo of kick, which involves a ball."]
    assert sets[1] == ["a video of wave.", "a photo of wave."]
    padded = pad_cycle(sets)
    assert [len(s) for s in padded] == [6, 6] and padded[1][2:4] == ["a video of wave.", "a photo of wave."]


def test_templates_render_and_hash():
    t = load_template("subactions", "subactions", "completion")
    assert t.render(class_name="kick ball", num_steps=3).endswith("Action: kick ball\n1.")
    assert t.priming == "1." and len(t.hash) == 64
    chat = load_template("subactions", "subactions", "chat")
    messages = chat.render(class_name="kick ball", num_steps=3)
    assert messages[0]["role"] == "system" and "kick ball" in messages[1]["content"]
    with pytest.raises(KeyError, match="num_steps"):
        t.render(class_name="x")
    with pytest.raises(FileNotFoundError, match="nope"):
        load_template("subactions", "nope")


def test_class_list_readers(tmp_path):
    ind = tmp_path / "classInd.txt"
    ind.write_text("2 BabyCrawling\n1 ApplyEyeMakeup\n3 YoYo\n")
    assert read_class_list(ind) == ["apply eye makeup", "baby crawling", "yo yo"]
    splits = tmp_path / "splits"
    splits.mkdir()
    for c in ("brush_hair", "ride_bike"):
        for s in (1, 2):
            (splits / f"{c}_test_split{s}.txt").write_text("")
    assert read_class_list(splits) == ["brush hair", "ride bike"]
    (tmp_path / "labels.json").write_text(json.dumps({"Pushing [something] from left to right": "1",
                                                      "Holding [something]": "0"}))
    assert read_class_list(tmp_path / "labels.json") == ["Holding something", "Pushing something from left to right"]
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start\nabseiling,a,1\nair drumming,b,2\nabseiling,c,3\n")
    assert read_class_list(tmp_path / "train.csv") == ["abseiling", "air drumming"]
    (tmp_path / "EPIC_verb_classes.csv").write_text("verb_id,class_key,verbs\n1,put,\"['put']\"\n0,take,\"['take']\"\n")
    assert read_class_list(tmp_path / "EPIC_verb_classes.csv") == ["take", "put"]
    (tmp_path / "fho_lta_taxonomy.json").write_text(json.dumps({"verbs": ["take", "put"], "nouns": ["knife"]}))
    assert read_class_list(tmp_path / "fho_lta_taxonomy.json") == ["take", "put", "knife"]
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_class_list(tmp_path / "missing.txt")
    assert len(bundled_classes("hmdb51")) == 51 and len(bundled_classes("ucf101")) == 101
    with pytest.raises(FileNotFoundError, match="did you mean 'hmdb51'"):
        bundled_classes("hmdb5l")


@needs_reference
def test_bundled_class_lists_match_the_official_releases():
    label = read_stdd_label_file(REFERENCE / "stdd_label_db" / "classes_label_hmdb51.yml")
    assert bundled_classes("hmdb51") == label["classes"]
    assert len(label["templates"]) >= 8
    stdd_ucf = [r["class"] for r in read_stdd_askg(REFERENCE / "stdd_label_db" / "classes_ASKG_ucf101.yml")]
    ours = bundled_classes("ucf101")
    # STDD spells one class from its video folder name ("HandStandPushups"); classInd.txt says "HandstandPushups"
    assert [a for a, b in zip(ours, stdd_ucf) if a != b] == ["handstand pushups"]


@needs_reference
def test_importers_read_the_official_files(tmp_path):
    corpus = read_task_adapter_pp_corpus(REFERENCE / "task_adapter_pp_corpus" / "classes_hmdb51.yml")
    assert len(corpus) == 51 and all(len(r["subactions"]) == 3 for r in corpus)
    assert corpus[0]["class"] == "brush hair"
    assert len(read_task_adapter_pp_corpus(REFERENCE / "task_adapter_pp_corpus" / "classes_ucf101.yml")) == 150

    askg = REFERENCE / "stdd_label_db" / "classes_ASKG_hmdb51.yml"
    xprompt = REFERENCE / "stdd_label_db" / "classes_xprompt_hmdb51.yml"
    records = read_stdd_askg(askg, xprompt)
    assert len(records) == 51
    first = records[0]
    assert first["obj_rel_triples"][0] == ["hairbrush", "used for", "brushing hair"]
    assert first["act_rel_triples"][0][1] == "starts with" and first["xprompt_ao"]
    assert len(read_stdd_askg(REFERENCE / "stdd_label_db" / "classes_ASKG_k400.yml")) == 400

    import_task_adapter_pp(REFERENCE / "task_adapter_pp_corpus" / "classes_hmdb51.yml", "hmdb51", root=tmp_path)
    import_stdd(askg, xprompt, "hmdb51", root=tmp_path)
    assert load_assets("subactions", "hmdb51", tmp_path)[0]["subactions"] == corpus[0]["subactions"]
    graph = load_assets("action_graph", "hmdb51", tmp_path)
    assert graph[0]["xprompt_oo"] == records[0]["xprompt_oo"]
    sets = build_prompt_sets(graph[:3])
    assert all(len(s) > 8 for s in sets)


def test_importers_name_malformed_files(tmp_path):
    bad = tmp_path / "classes_x.yml"
    bad.write_text("kick:\n  label: kick\n")
    with pytest.raises(ValueError, match="classes_x.yml: class 'kick' has no 'sub_act_en_li'"):
        read_task_adapter_pp_corpus(bad)
    bad.write_text("kick: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        read_task_adapter_pp_corpus(bad)
