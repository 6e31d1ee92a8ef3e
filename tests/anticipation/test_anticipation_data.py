"""Anticipation readers, submission writer and text mapper on small files in the real formats."""
import json

import numpy as np
import pytest

from mmreason.data.anticipation import (ActionVocab, AnnotationError, Vocabulary, check_ego4d_submission,
                                        ego4d_lta_windows, load_egtea_vocab, load_ego4d_taxonomy, load_epic_classes,
                                        load_epic_vocab, load_rulstm_actions, map_sequence, open_features,
                                        read_class_ids, read_ego4d_lta, read_epic55_action_labels,
                                        read_egotopo_split, read_lta_segments_json, read_rulstm_csv, rulstm_frame_key,
                                        rulstm_past_frames, split_action_phrases, verb_set_samples,
                                        write_ego4d_submission, RulstmFeatureDataset)

TAXONOMY = {"verbs": ["take_(pick,_grab,_get)", "cut_(chop,_slice)", "put_(place,_leave,_drop)", "turn_on"],
            "nouns": ["knife", "onion", "cutting_board", "nut_(food)", "tap"]}


def _ego4d_record(clip, idx, verb, noun, test=False):
    rec = {"clip_uid": clip, "video_uid": "vid-" + clip, "clip_id": 7, "action_idx": idx,
           "action_clip_start_sec": 2.0 * idx, "action_clip_end_sec": 2.0 * idx + 1.5,
           "action_clip_start_frame": 60 * idx, "action_clip_end_frame": 60 * idx + 45}
    if not test:
        rec.update({"verb": TAXONOMY["verbs"][verb], "noun": TAXONOMY["nouns"][noun],
                    "verb_label": verb, "noun_label": noun})
    return rec


@pytest.fixture
def taxonomy(tmp_path):
    path = tmp_path / "fho_lta_taxonomy.json"
    path.write_text(json.dumps(TAXONOMY))
    return load_ego4d_taxonomy(path)


# ------------------------------------------------------------------------------------------------ Ego4D

def test_ego4d_reader_windows_and_keys(tmp_path):
    # clip A has 30 actions (stored out of order), clip B has 27 (too short for 8 + 20)
    recs = [_ego4d_record("A", i, i % 4, i % 5) for i in reversed(range(30))]
    recs += [_ego4d_record("B", i, 0, 0) for i in range(27)]
    path = tmp_path / "fho_lta_val.json"
    path.write_text(json.dumps({"version": "2", "split": "val", "clips": recs}))
    clips = read_ego4d_lta(path)
    assert [a.action_idx for a in clips["A"]] == list(range(30))
    windows = ego4d_lta_windows(clips, 8, 20)
    assert [w.key for w in windows] == ["A_7", "A_8", "A_9"]      # len - Z - N + 1 = 3 windows, last observed idx
    w = windows[1]
    assert w.observed_labels().shape == (8, 2) and w.future_labels().shape == (20, 2)
    assert w.future_labels()[0].tolist() == [9 % 4, 9 % 5]         # first future action is action 9
    assert clips["A"][4].verb == "take_(pick,_grab,_get)" and clips["A"][4].start_sec == 8.0


def test_ego4d_test_split_without_labels(tmp_path):
    path = tmp_path / "fho_lta_test_unannotated.json"
    path.write_text(json.dumps({"clips": [_ego4d_record("T", i, 0, 0, test=True) for i in range(28)]}))
    windows = ego4d_lta_windows(read_ego4d_lta(path))
    assert [w.key for w in windows] == ["T_7"]
    assert (windows[0].future_labels() == -1).all()


def test_ego4d_reader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="fho_lta_train.json"):
        read_ego4d_lta(tmp_path / "fho_lta_train.json")
    bad = tmp_path / "fho_lta_train.json"
    bad.write_text(json.dumps([{"clip_uid": "x"}]))
    with pytest.raises(AnnotationError, match="'clips' list"):
        read_ego4d_lta(bad)
    bad.write_text(json.dumps({"clips": [{"clip_uid": "x", "verb_label": 1}]}))
    with pytest.raises(AnnotationError, match=r"clips\[0\]"):
        read_ego4d_lta(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_ego4d_lta(bad)
    tax = tmp_path / "fho_lta_taxonomy.json"
    tax.write_text(json.dumps({"verbs": ["a"]}))
    with pytest.raises(AnnotationError, match="'verbs' and 'nouns'"):
        load_ego4d_taxonomy(tax)


def test_taxonomy_vocabulary(taxonomy):
    assert len(taxonomy.verbs) == 4 and len(taxonomy.nouns) == 5
    assert taxonomy.verbs.text(0) == "take" and taxonomy.verbs.synonyms[0] == ("pick", "grab", "get")
    assert taxonomy.nouns.text(2) == "cutting board"
    assert taxonomy.num_actions == 20 and taxonomy.action_id(2, 3) == 13 and taxonomy.verb_noun(13) == (2, 3)
    assert taxonomy.verbs.lookup("take_(pick,_grab,_get)") == 0     # exact raw name
    assert taxonomy.verbs.lookup("Grab") == 0                       # synonym, case-insensitive
    assert taxonomy.nouns.lookup("Cutting-Board") == 2
    assert taxonomy.nouns.lookup("cutting boards") == 2             # fuzzy at AntGPT's cutoff 90
    assert taxonomy.nouns.lookup("onoin") is None                   # a swap scores 80 < 90 ...
    assert taxonomy.nouns.lookup("onoin", fuzzy_cutoff=75) == 1     # ... but passes a looser cutoff
    assert taxonomy.nouns.lookup("cutting boards", fuzzy_cutoff=None) is None
    assert taxonomy.nouns.lookup("spaceship") is None


def test_submission_writer_official_format(tmp_path):
    keys = ["A_7", "A_8"]
    verbs = np.arange(2 * 5 * 20).reshape(2, 5, 20) % 4
    nouns = np.zeros((2, 5, 20), dtype=np.int64)
    path = write_ego4d_submission(tmp_path / "outputs.json", keys, verbs, nouns)
    sub = json.loads(path.read_text())
    assert set(sub) == {"A_7", "A_8"}
    assert set(sub["A_7"]) == {"verb", "noun"}
    assert len(sub["A_7"]["verb"]) == 5 and all(len(s) == 20 for s in sub["A_7"]["verb"])
    assert sub["A_8"]["verb"][1] == verbs[1, 1].tolist()
    assert all(isinstance(x, int) for x in sub["A_7"]["noun"][0])
    assert check_ego4d_submission(path, ["A_7", "A_8"]) == []
    assert check_ego4d_submission(path, ["A_9"]) == ["missing key A_9"]
    with pytest.raises(ValueError, match=r"\[N, K, Z\]"):
        write_ego4d_submission(tmp_path / "o.json", keys, verbs[:, :4], nouns)
    with pytest.raises(ValueError, match="integer"):
        write_ego4d_submission(tmp_path / "o.json", keys, verbs.astype(float), nouns)



# Real Ego4D v2 noun names: single-item parentheses disambiguate (nut_(food) / nut_(tool), mouse_(computer)), a
# multi-item last group lists synonyms, a first group qualifies (pepper_(vegetable)_(capsicum,_pepper)), and one
# noun carries a stray quote and trailing comma.
EGO4D_NOUNS = ["nut_(food)", "nut_(tool)", "pot", "pot_(planter)", "mouse_(computer)", "food",
               "pepper_(vegetable)_(capsicum,_pepper)", "chip_(food)", "chip_(wood,_metal)", "chip_(wood'_metal),",
               "cup_(cup,_mug,_tumbler)", "bat_(sports)", "bat_(tool)"]


def test_ego4d_disambiguated_classes_stay_distinct_and_predictable():
    vocab = ActionVocab(Vocabulary.from_names(["take_(pick,_grab,_get)", "file_(with_tool)"], "verb"),
                        Vocabulary.from_names(EGO4D_NOUNS, "noun"))
    nouns = vocab.nouns
    assert nouns.display[:4] == ("nut (food)", "nut (tool)", "pot", "pot (planter)")
    assert nouns.text(4) == "mouse (computer)" and nouns.text(6) == "pepper (vegetable)"
    assert nouns.display[7:10] == ("chip (food)", "chip (wood/metal)", "chip (wood metal)")
    assert len(set(nouns.display)) == len(nouns) and "," not in " ".join(nouns.display)   # commas split LLM answers
    assert vocab.verbs.display == ("take", "file (with tool)") and vocab.verbs.synonyms[0] == ("pick", "grab", "get")
    # a qualifier is no synonym: "food" is the food class, never a nut; the bare name of a unique class still maps
    assert nouns.lookup("food") == 5 and nouns.synonyms[0] == () and nouns.lookup("mouse") == 4
    assert nouns.lookup("capsicum") == 6 and nouns.lookup("mug") == 10
    # the display text (what the prompt shows and the LLM writes back), the raw name and free text -> the right id
    for i, name in enumerate(EGO4D_NOUNS):
        assert nouns.lookup(nouns.display[i], fuzzy_cutoff=None) == i and nouns.lookup(name, fuzzy_cutoff=None) == i
    text = ("take nut (food), grab the nut (tool), take pot, take the pot (planter), take nut_(food), "
            "pick bat (sports), take bat tool, file (with tool) chip (food), take food, take the mouse")
    assert map_sequence(text, vocab, z=10).pairs == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 0), (0, 11), (0, 12),
                                                      (1, 7), (0, 5), (0, 4)]
    # prompt round trip: every (verb, noun) written as its display text maps back to itself
    pairs = [(v, n) for v in range(2) for n in range(len(nouns)) if n != 9]   # 9 normalises like 8 (same name)
    written = ", ".join(f"{vocab.verbs.text(v)} {nouns.text(n)}" for v, n in pairs)
    assert map_sequence(written, vocab, z=len(pairs)).pairs == pairs


def test_recognized_observed_actions_formats(tmp_path):
    from mmreason.data.anticipation import read_recognized_actions

    path = tmp_path / "val_observed.json"
    path.write_text(json.dumps({
        "A_0": {"verb": 2, "noun": 1},                                   # top-1 ids
        "A_1": {"verb": [3, 0, 1], "noun": [4, 2]},                      # ranked candidates: the first counts
        "A_2": {"verb": [0.1, 2.5, -1.0, 0.3], "noun": [0.0, 0.0, 0.0, 0.0, 9.0]},   # class scores: argmax
        # Ego4D recognition windows (K sequences over the 3 segments ending at 5): votes per segment
        "B_5": {"verb": [[1, 1, 2], [1, 3, 2]], "noun": [[0, 0, 0], [4, 0, 0]]},
        "B_6": {"verb": [[3, 2, 0]], "noun": [[0, 1, 1]]},               # covers B_4 .. B_6
    }))
    table = read_recognized_actions(path, num_verbs=4, num_nouns=5)
    assert table["A_0"] == (2, 1) and table["A_1"] == (3, 4) and table["A_2"] == (1, 4)
    # B_3: verbs 1, 1 / nouns 0, 4 (tie -> smaller id 0); B_4: verbs 1, 3, 3 -> 3 / nouns 0, 0, 0; B_5: verbs 2, 2, 2
    # and 0 -> 2, nouns 0, 0, 1 -> 0; B_6 only from the second window
    assert table["B_3"] == (1, 0) and table["B_4"] == (3, 0) and table["B_5"] == (2, 0) and table["B_6"] == (0, 1)
    for bad, match in [({"A_0": {"verb": 7, "noun": 0}}, "'A_0' verb 7 is not a class id in 0..3"),
                       ({"clip": {"verb": 1, "noun": 0}}, "entry 'clip' must be keyed"),
                       ({"A_0": {"verb": [[1, 2], [1]], "noun": 0}}, "share one length"),
                       ({"A_0": {"verb": [0.5, 0.5], "noun": 0}}, "2 scores for 4 classes")]:
        path.write_text(json.dumps(bad))
        with pytest.raises(AnnotationError, match=match) as err:
            read_recognized_actions(path, num_verbs=4, num_nouns=5)
        assert "val_observed.json" in str(err.value)

# ------------------------------------------------------------------------------------------------ EPIC / EGTEA vocab

def test_epic_class_csvs_and_actions(tmp_path):
    (tmp_path / "EPIC_verb_classes.csv").write_text(
        "verb_id,class_key,verbs\n0,take,\"['take', 'grab', 'pick-up']\"\n1,put,\"['put', 'place']\"\n2,turn-on,['turn-on']\n")
    (tmp_path / "EPIC_noun_classes.csv").write_text(
        "noun_id,class_key,nouns\n0,pan,\"['pan', 'frying pan']\"\n1,board:cutting,\"['board:cutting']\"\n2,tap,['tap']\n")
    (tmp_path / "actions.csv").write_text("id,action,verb,noun\n0, take_pan,0,0\n1, put_board:cutting,1,1\n2, turn-on_tap,2,2\n")
    vocab = load_epic_vocab(tmp_path / "EPIC_verb_classes.csv", tmp_path / "EPIC_noun_classes.csv", tmp_path / "actions.csv")
    assert vocab.num_actions == 3 and vocab.verb_noun(1) == (1, 1) and vocab.action_id(2, 2) == 2
    assert vocab.action_id(0, 2) is None
    assert vocab.nouns.text(1) == "cutting board" and vocab.verbs.text(2) == "turn on"
    assert vocab.verbs.lookup("grab") == 0 and vocab.nouns.lookup("frying pan") == 0
    assert vocab.action_verbs().tolist() == [0, 1, 2]
    # EK-100 layout: id,key,instances,category
    (tmp_path / "EPIC_100_verb_classes.csv").write_text(
        "id,key,instances,category\n0,take,\"['take', 'grab']\",retrieve\n1,put,\"['put']\",leave\n")
    assert load_epic_classes(tmp_path / "EPIC_100_verb_classes.csv", "verb").display == ("take", "put")
    # many-shot list: first column after a header
    (tmp_path / "EPIC_many_shot_verbs.csv").write_text("verb_class,verb\n0,take\n2,turn-on\n")
    assert read_class_ids(tmp_path / "EPIC_many_shot_verbs.csv").tolist() == [0, 2]
    # errors name the file
    (tmp_path / "bad.csv").write_text("verb_id,class_key\n0,take\n2,put\n")
    with pytest.raises(AnnotationError, match="bad.csv"):
        load_epic_classes(tmp_path / "bad.csv", "verb")
    with pytest.raises(FileNotFoundError, match="EPIC_noun_classes_missing.csv"):
        load_epic_classes(tmp_path / "EPIC_noun_classes_missing.csv", "noun")


def test_egtea_actions_without_header(tmp_path):
    (tmp_path / "actions.csv").write_text("0, 0_0, Inspect/Read_recipe\n1, 1_1, Open_fridge\n2, 2_2, Take_eating:utensil\n"
                                          "3, 1_3, Open_cabinet\n")
    rows = load_rulstm_actions(tmp_path / "actions.csv")
    assert rows[3] == (1, 3, "Open_cabinet")
    vocab = load_egtea_vocab(tmp_path / "actions.csv")
    assert len(vocab.verbs) == 3 and len(vocab.nouns) == 4
    assert vocab.verbs.text(0) == "Inspect/Read" and vocab.nouns.text(2) == "eating utensil"   # EGTEA order kept
    assert vocab.action_text(3) == "Open cabinet"
    # raw EGTEA annotations: ';'-separated, times in ms, texts mapped to ids, first noun kept
    (tmp_path / "action_labels.csv").write_text(
        "# Clip ID (Unique, used only internally); Clip Prefix (Unique); Video Session; Starting Time (ms); "
        "Ending Time (ms); Action Label; Verb Label; Noun Label(s)\n"
        "2; P05-R01-PastaSalad-5000-6000; P05-R01-PastaSalad; 5000; 6000; Open fridge; Open; fridge\n"
        "1; P05-R01-PastaSalad-1000-2000; P05-R01-PastaSalad; 1000; 2000; Take eating_utensil; Take; eating_utensil,cabinet\n")
    from mmreason.data.anticipation import read_egtea_action_labels
    segs = read_egtea_action_labels(tmp_path / "action_labels.csv", vocab)["P05-R01-PastaSalad"]
    assert [(s.verb_label, s.noun_label) for s in segs] == [(2, 2), (1, 1)]
    assert segs[0].elocation == pytest.approx(2000 / 6000)
    (tmp_path / "broken.csv").write_text("0, 00, Inspect\n")
    with pytest.raises(AnnotationError, match="broken.csv"):
        load_rulstm_actions(tmp_path / "broken.csv")


# ------------------------------------------------------------------------------------------------ EK-55 / EGTEA LTA

def test_verb_set_samples_follow_antgpt_rule(tmp_path):
    # 8 segments evenly spread; verbs 0..7; slocation/elocation given as in AntGPT's converted files
    clips = [{"clip_uid": "P01_01", "action_idx": i, "verb_label": i, "noun_label": 0,
              "slocation": i / 8, "elocation": (i + 0.5) / 8} for i in range(8)]
    path = tmp_path / "ek55_lta_val.json"
    path.write_text(json.dumps({"clips": clips}))
    videos = read_lta_segments_json(path)
    samples = verb_set_samples(videos, num_verbs=10, ratios=(0.25, 0.5, 0.75))
    # r=0.25: observed ends <= .25 -> segments 0,1 only (2 < 3) -> dropped
    # r=0.5: observed 0..3, future starts > .5 -> 5,6,7 ; r=0.75: observed 0..5, future 7 only -> dropped
    assert [s.ratio for s in samples] == [0.5]
    assert np.flatnonzero(samples[0].target).tolist() == [5, 6, 7]
    assert len(samples[0].observed) == 4 and samples[0].last_observed_id == "P01_01_3"


def test_lta_positions_from_seconds_and_epic_csv(tmp_path):
    clips = [{"clip_uid": "v", "action_idx": i, "verb_label": i, "action_clip_start_sec": 10.0 * i,
              "action_clip_end_sec": 10.0 * i + 5} for i in range(4)]
    (tmp_path / "a.json").write_text(json.dumps({"clips": clips}))
    segs = read_lta_segments_json(tmp_path / "a.json")["v"]
    assert segs[-1].elocation == pytest.approx(1.0) and segs[1].slocation == pytest.approx(10 / 35)
    (tmp_path / "EPIC_train_action_labels.csv").write_text(
        "uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,start_frame,stop_frame,verb,verb_class,"
        "noun,noun_class,all_nouns,all_noun_classes\n"
        "1,P01,P01_01,open door,00:00:01.00,00:00:02.00,100,200,open,3,door,8,['door'],[8]\n"
        "0,P01,P01_01,take cup,00:00:00.50,00:00:00.90,50,90,take,0,cup,13,['cup'],[13]\n"
        "2,P02,P02_03,wash cup,00:00:00.50,00:00:00.90,50,90,wash,2,cup,13,['cup'],[13]\n")
    videos = read_epic55_action_labels(tmp_path / "EPIC_train_action_labels.csv", video_ids=["P01_01"])
    assert list(videos) == ["P01_01"]
    assert [s.verb_label for s in videos["P01_01"]] == [0, 3]          # sorted by start frame
    assert videos["P01_01"][0].elocation == pytest.approx(90 / 200)



def test_egotopo_split_positions_are_relative_to_the_video_length(tmp_path):
    """EGO-TOPO split rows (path, start, end, verb, noun; tab-separated) with the video length from _nframes.csv:
    the observation ends at int(r * num_frames) and the future starts after it (EGO-TOPO's frame rule)."""
    rows = [("P01/P01_01", 100, 180, 4, 1), ("P01/P01_01", 10, 90, 0, 0), ("P01/P01_01", 200, 240, 1, 2),
            ("P01/P01_01", 300, 390, 2, 0), ("P01/P01_01", 400, 480, 3, 3), ("P01/P01_01", 600, 700, 5, 1),
            ("P01/P01_01", 750, 790, 6, 1)]
    split = tmp_path / "val_S1.csv"
    split.write_text("\n".join("\t".join(map(str, r)) for r in rows) + "\n")
    (tmp_path / "val_S1_nframes.csv").write_text("P01/P01_01\t1000\n")
    segs = read_egotopo_split(split)["P01_01"]
    assert [s.start_frame for s in segs] == [10, 100, 200, 300, 400, 600, 750]        # start order = action_idx
    assert [s.action_idx for s in segs] == list(range(7)) and segs[1].verb_label == 4
    assert segs[0].num_frames == 1000 and segs[-1].elocation == pytest.approx(0.79)    # over the video, not 790
    samples = verb_set_samples({"P01_01": segs}, num_verbs=8, ratios=(0.25, 0.5, 0.75))
    # r=.25: t=250 -> observed ends <= 250: 3 segments; future starts > 250: 300, 400, 600, 750 -> verbs {2,3,5,6}
    # r=.5: t=500 -> 5 observed, future {5, 6} (2 < 3 -> dropped); r=.75: dropped too
    assert [s.ratio for s in samples] == [0.25]
    assert np.flatnonzero(samples[0].target).tolist() == [2, 3, 5, 6]
    assert [g.start_frame for g in samples[0].future] == [300, 400, 600, 750]
    assert samples[0].last_observed_id == "P01_01_2"
    # without a frame-count file the length is the last annotated end (EGO-TOPO's EGTEA loader)
    (tmp_path / "val_S1_nframes.csv").unlink()
    assert read_egotopo_split(split)["P01_01"][0].num_frames == 790
    split.write_text("P01/P01_01\t10\tninety\t0\t0\n")
    with pytest.raises(AnnotationError, match="val_S1.csv: line 1"):
        read_egotopo_split(split)


def test_egtea_index_files_vocabulary(tmp_path):
    from mmreason.data.anticipation import load_egtea_idx_vocab

    (tmp_path / "verb_idx.txt").write_text("Take 1\nTurn on 3\nPut 2\n")
    (tmp_path / "noun_idx.txt").write_text("cutting_board 2\nbowl 1\n")
    vocab = load_egtea_idx_vocab(tmp_path / "verb_idx.txt", tmp_path / "noun_idx.txt")
    assert vocab.verbs.display == ("take", "put", "turn on") and vocab.nouns.display == ("bowl", "cutting board")
    assert map_sequence("turn on the cutting board, take bowl", vocab, z=2).pairs == [(2, 1), (0, 0)]
    (tmp_path / "noun_idx.txt").write_text("bowl 1\nplate 3\n")
    with pytest.raises(AnnotationError, match="noun_idx.txt"):
        load_egtea_idx_vocab(tmp_path / "verb_idx.txt", tmp_path / "noun_idx.txt")

# ------------------------------------------------------------------------------------------------ RULSTM features

def test_rulstm_past_frames_hand_computed():
    # action at frame 300 (10 s): stamps 3.5 .. 0.25 s before -> 6.5 s .. 9.75 s -> floor(t * 30)
    expected = [195, 202, 210, 217, 225, 232, 240, 247, 255, 262, 270, 277, 285, 292]
    assert rulstm_past_frames(300).tolist() == expected
    # action at frame 30 (1 s): frames before 1 are replaced by the earliest valid frame (7)
    assert rulstm_past_frames(30).tolist() == [7] * 11 + [7, 15, 22]
    assert rulstm_past_frames(5).min() < 1                               # too early: discarded by the dataset


def _write_lmdb(path, video, frames, dim, offset):
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for f in frames:
            vec = np.full(dim, offset + f, dtype=np.float32)
            txn.put(rulstm_frame_key(video, f).encode(), vec.tobytes())
    env.close()


def test_rulstm_csv_lmdb_and_npy_stores(tmp_path):
    (tmp_path / "validation.csv").write_text("11,P01_11,300,400,3,7,42\n12,P01_11,5,40,1,1,9\n")
    rows = read_rulstm_csv(tmp_path / "validation.csv")
    assert rows[0].video == "P01_11" and rows[0].action == 42 and rows[0].verb == 3
    (tmp_path / "test_seen.csv").write_text("1,P01_11,300,400\n")
    assert read_rulstm_csv(tmp_path / "test_seen.csv")[0].action == -1
    (tmp_path / "bad.csv").write_text("1,P01_11,three,400,1,1,1\n")
    with pytest.raises(AnnotationError, match="bad.csv"):
        read_rulstm_csv(tmp_path / "bad.csv")

    frames = rulstm_past_frames(300)
    _write_lmdb(tmp_path / "rgb", "P01_11", frames, 4, 0.0)
    _write_lmdb(tmp_path / "obj", "P01_11", frames, 3, 1000.0)
    assert rulstm_frame_key("P01_11", 7) == "P01_11_frame_0000000007.jpg"
    stores = {"rgb": open_features(tmp_path / "rgb"), "obj": open_features(tmp_path / "obj")}
    ds = RulstmFeatureDataset(tmp_path / "validation.csv", stores)
    assert len(ds) == 1 and [r.id for r in ds.discarded] == [12]
    item = ds[0]
    assert item["features"]["rgb"].shape == (14, 4) and item["features"]["obj"].shape == (14, 3)
    assert item["features"]["rgb"][:, 0].tolist() == frames.astype(np.float32).tolist()
    assert item["features"]["obj"][0, 0] == 1000.0 + frames[0] and item["action"] == 42

    with pytest.raises(KeyError, match="P01_99_frame_0000000195.jpg"):
        stores["rgb"].read("P01_99", frames)
    with pytest.raises(FileNotFoundError, match="flow"):
        open_features(tmp_path / "flow")

    npy = tmp_path / "npy"
    npy.mkdir()
    np.save(npy / "P01_11.npy", np.arange(400, dtype=np.float32)[:, None].repeat(2, 1))
    store = open_features(npy, "npy")
    assert store.read("P01_11", [1, 300])[:, 0].tolist() == [0.0, 299.0]      # row = frame - 1
    with pytest.raises(KeyError, match="outside"):
        store.read("P01_11", [401])


# ------------------------------------------------------------------------------------------------ text mapper

def test_split_action_phrases():
    text = "Here are the actions:\n1. take knife\n2) cut onion, put knife\n- turn on tap."
    assert split_action_phrases(text) == ["Here are the actions:", "take knife", "cut onion", "put knife", "turn on tap"]


def test_map_sequence_noisy_llm_text_to_ids(taxonomy):
    text = ("Sure! Here are the next actions:\n1. Take the knife\n2. chop onion\n3. put knife on the cutting board\n"
            "4. fly spaceship\n5. tuen_on tap\n6. cut onoin")
    res = map_sequence(text, taxonomy, z=8, fuzzy_cutoff=75)
    # take->0/knife->0, chop (synonym of cut)->1/onion->1, put->2 + head noun knife->0, fuzzy "tuen on"->turn_on
    assert res.pairs[:5] == [(0, 0), (1, 1), (2, 0), (3, 4), (1, 1)]
    assert res.num_mapped == 5 and res.dropped == ["Sure! Here are the next actions:", "fly spaceship"]
    assert res.pairs[5:] == [(1, 1)] * 3 and res.padded == 3          # padded by repeating the last action
    assert res.verbs == [0, 1, 2, 3, 1, 1, 1, 1]
    strict = map_sequence(text, taxonomy, z=8)                         # AntGPT's cutoff 90 drops the typos
    assert strict.num_mapped == 3 and strict.pairs == [(0, 0), (1, 1)] + [(2, 0)] * 6


def test_map_sequence_truncates_pairs_and_fill_policy(taxonomy):
    res = map_sequence("take knife, cut onion, put knife", taxonomy, z=2)
    assert res.pairs == [(0, 0), (1, 1)] and res.padded == 0
    res = map_sequence([("Grab", "Onion"), ("cut", "tap")], taxonomy, z=4, pad="fill", fill=(-1, -1))
    assert res.pairs == [(0, 1), (1, 4), (-1, -1), (-1, -1)]
    empty = map_sequence("I cannot help with that.", taxonomy, z=3)
    assert empty.pairs == [(0, 0)] * 3 and empty.num_mapped == 0       # nothing mapped: the fill value
    with pytest.raises(ValueError, match="pad"):
        map_sequence("take knife", taxonomy, z=3, pad="zeros")


def test_vocabulary_from_plain_names():
    vocab = ActionVocab(Vocabulary.from_names(["open", "close"], "verb"), Vocabulary.from_names(["door"], "noun"))
    assert map_sequence("Open the door\nclose door", vocab, z=2).pairs == [(0, 0), (1, 0)]
    assert map_sequence("then open door, and finally close the door", vocab, z=2).pairs == [(0, 0), (1, 0)]
    assert map_sequence("The person opens the door. Closing door", vocab, z=2).pairs == [(0, 0), (1, 0)]


def test_map_prefers_longest_exact_noun(taxonomy):
    # "cutting board" is an exact two-word noun; "knife" must not win just because it comes first elsewhere
    assert map_sequence("put the cutting board in the sink", taxonomy, z=1).pairs == [(2, 2)]
    assert map_sequence("put knife on the cutting board", taxonomy, z=1).pairs == [(2, 0)]
    assert map_sequence("turn on the tap", taxonomy, z=1).pairs == [(3, 4)]     # two-word verb "turn on"
