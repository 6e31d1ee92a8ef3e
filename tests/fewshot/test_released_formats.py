"""Released data formats: Task-Adapter++ split lines with label ids + a class list, `id,name` CSV class files,
CamelCase UCF101 folders matched to the released corpus, `mmreason import`, and training that stops before its
first step when the sub-action asset lacks classes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mmreason.assets.classes import class_key, read_class_index, read_class_list
from mmreason.assets.io import read_records
from mmreason.cli.main import main
from mmreason.config import apply_overrides
from mmreason.data.fewshot import FewShotDataConfig, build_episode_dataset, read_split_file
from mmreason.methods.task_adapter_pp import METHOD
from mmreason.methods.task_adapter_pp.model import SubactionBank, load_subactions

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
CORPUS = REFERENCE / "task_adapter_pp_corpus"
LABEL_DB = REFERENCE / "stdd_label_db"
# the 101 UCF101 class folders (classInd.txt)
UCF101 = ("ApplyEyeMakeup ApplyLipstick Archery BabyCrawling BalanceBeam BandMarching BaseballPitch Basketball "
          "BasketballDunk BenchPress Biking Billiards BlowDryHair BlowingCandles BodyWeightSquats Bowling "
          "BoxingPunchingBag BoxingSpeedBag BreastStroke BrushingTeeth CleanAndJerk CliffDiving CricketBowling "
          "CricketShot CuttingInKitchen Diving Drumming Fencing FieldHockeyPenalty FloorGymnastics FrisbeeCatch "
          "FrontCrawl GolfSwing Haircut Hammering HammerThrow HandstandPushups HandstandWalking HeadMassage HighJump "
          "HorseRace HorseRiding HulaHoop IceDancing JavelinThrow JugglingBalls JumpingJack JumpRope Kayaking Knitting "
          "LongJump Lunges MilitaryParade Mixing MoppingFloor Nunchucks ParallelBars PizzaTossing PlayingCello "
          "PlayingDaf PlayingDhol PlayingFlute PlayingGuitar PlayingPiano PlayingSitar PlayingTabla PlayingViolin "
          "PoleVault PommelHorse PullUps Punch PushUps Rafting RockClimbingIndoor RopeClimbing Rowing SalsaSpin "
          "ShavingBeard Shotput SkateBoarding Skiing Skijet SkyDiving SoccerJuggling SoccerPenalty StillRings "
          "SumoWrestling Surfing Swing TableTennisShot TaiChi TennisSwing ThrowDiscus TrampolineJumping Typing "
          "UnevenBars VolleyballSpiking WalkingWithDog WallPushups WritingOnBoard YoYo").split()
# lines as in the released HMDB51 train.txt: flat frame folders, the label id is the only class information
RELEASED_HMDB = ["/mnt/sdd/datasets/hmdb51/frames/Chanta!____THAT_IS_long_blonde_hair!_brush_hair_u_cm_np1_le_goo_0 405 0",
                 "/mnt/sdd/datasets/hmdb51/frames/brushing_jrs_hair_brush_hair_u_cm_np2_le_goo_1 281 0",
                 "/mnt/sdd/datasets/hmdb51/frames/Catch_the_ball_catch_f_cm_np1_fr_goo_0 64 1",
                 "/mnt/sdd/datasets/hmdb51/frames/Ball_catch_catch_u_cm_np1_ba_med_2 77 1"]


def test_released_flat_split_lines_take_their_class_from_the_label_id(tmp_path):
    split = tmp_path / "train.txt"
    split.write_text("\n".join(RELEASED_HMDB) + "\n")
    with pytest.raises(ValueError, match=r"label ids \[0, 1\] all sit in folder 'frames'.*set data.class_list"):
        read_split_file(split)  # (before: one class named "frames" holding every video)
    names = tmp_path / "hmdb51_classes.txt"
    names.write_text("brush hair\ncatch\nchew\n")  # line i = label id i
    classes = read_split_file(split, class_list=names)
    assert list(classes) == ["brush hair", "catch"]
    assert [(Path(r.path).name[:12], r.num_frames) for r in classes["catch"]] == [("Catch_the_ba", 64),
                                                                                   ("Ball_catch_c", 77)]
    csv = tmp_path / "classes.csv"
    csv.write_text("id,name\n1,catch\n0,brush hair\n")  # an id,name CSV, ids in any order
    assert {c: len(v) for c, v in read_split_file(split, class_list=csv).items()} == {"brush hair": 2, "catch": 2}
    cfg = FewShotDataConfig(dataset="split_files", train_split=str(split), class_list=str(names), n_way=2)
    assert build_episode_dataset(cfg, "train", 1).class_names == ["brush hair", "catch"]
    short = tmp_path / "short.txt"
    short.write_text("brush hair\n")
    with pytest.raises(ValueError, match=r"train.txt:3: label 1 is not in the class list .*short.txt"):
        read_split_file(split, class_list=short)
    # per-class folders still name their classes without a list
    (tmp_path / "nested.txt").write_text("hmdb/brush_hair/a 10 0\nhmdb/catch/b 12 1\n")
    assert list(read_split_file(tmp_path / "nested.txt")) == ["brush_hair", "catch"]


def test_id_name_csv_class_files(tmp_path):
    csv = tmp_path / "kinetics_400_labels.csv"
    csv.write_text("id,name\n2,air drumming\n0,abseiling\n1,\"adjusting glasses, sunglasses\"\n")
    assert read_class_list(csv) == ["abseiling", "adjusting glasses, sunglasses", "air drumming"]
    assert read_class_index(csv) == {0: "abseiling", 1: "adjusting glasses, sunglasses", 2: "air drumming"}
    classind = tmp_path / "classInd.txt"
    classind.write_text("1 ApplyEyeMakeup\n2 ApplyLipstick\n")
    assert read_class_index(classind) == {1: "apply eye makeup", 2: "apply lipstick"}  # the file's own ids
    lines = tmp_path / "classes.txt"
    lines.write_text("brush hair\ncatch\n")
    assert read_class_index(lines) == {0: "brush hair", 1: "catch"}
    assert read_class_index(LABEL_DB / "classes_label_hmdb51.yml")[0] == "brush hair"  # STDD's classes: list
    with pytest.raises(ValueError, match="needs a 'classes:' list"):  # a corpus is no class list
        read_class_index(CORPUS / "classes_hmdb51.yml")
    (tmp_path / "dup.csv").write_text("id,name\n0,a\n0,b\n")
    with pytest.raises(ValueError, match="dup.csv: label id 0 appears twice"):
        read_class_index(tmp_path / "dup.csv")
    (tmp_path / "bad.csv").write_text("id,name\n0,a\nx,b\n")
    with pytest.raises(ValueError, match="bad.csv:3: expected '<id>,<name>'"):
        read_class_list(tmp_path / "bad.csv")


def test_camelcase_ucf101_folders_find_the_released_corpus_entries():
    corpus = yaml.safe_load((CORPUS / "classes_ucf101.yml").read_text(encoding="utf-8"))
    bank = SubactionBank(load_subactions(str(CORPUS / "classes_ucf101.yml")), 3, "classes_ucf101.yml")
    assert all(folder in bank for folder in UCF101)  # (before: only one-word classes such as 'Archery' matched)
    assert bank["ApplyEyeMakeup"] == corpus["apply eye makeup"]["sub_act_en_li"]
    assert bank.name("ApplyEyeMakeup") == "apply eye makeup"
    assert bank.name("HandstandPushups") == "hand stand pushups" and bank.name("Shotput") == "shotput"
    assert bank.name("YoYo") == "yo yo" and class_key("brush_hair") == class_key("Brush Hair") == "brushhair"
    assert "ApplyEyeMakeupp" not in bank


def test_prompts_name_the_class_as_the_corpus_does():
    from mmreason.methods.task_adapter_pp.model import TaskAdapterPPModel

    cfg = apply_overrides(METHOD.config_cls(), ["model.clip_model=mmr-tiny-32", "model.num_frames=4",
                                                "data.num_frames=4", "data.image_size=32",
                                                "model.text_adapter_layers=2"])
    model = TaskAdapterPPModel(cfg, load_subactions(str(CORPUS / "classes_ucf101.yml")))
    assert model.prompts("ApplyEyeMakeup")[0] == "A video of action about apply eye makeup: " + \
        yaml.safe_load((CORPUS / "classes_ucf101.yml").read_text())["apply eye makeup"]["sub_act_en_li"][0]


def test_training_stops_before_the_first_step_naming_the_classes_without_subactions(tmp_path, capsys):
    split = tmp_path / "train.txt"
    split.write_text("".join(f"{c}/v{i}\n" for c in ("brush_hair", "ApplyEyeMakeup", "catch", "Jump Rope")
                             for i in range(2)))
    run = tmp_path / "run"
    code = main(["train", "--config", "task_adapter_pp/tiny_real_video", f"data.train_split={split}",
                 f"data.val_split={split}", f"data.test_split={split}", f"data.root={tmp_path}",
                 f"model.subactions_path={CORPUS / 'classes_hmdb51.yml'}", f"train.output_dir={run}"])
    err = capsys.readouterr().err
    assert code == 2 and "lacks 2 of the 4 classes: 'ApplyEyeMakeup', 'Jump Rope'" in err
    assert "train split" in err and not run.exists()  # nothing was built or written


def test_import_released_assets_into_knowledge(tmp_path, capsys):
    assert main(["import", "task_adapter_pp", str(CORPUS), "--dataset", "hmdb51",
                 "--knowledge-root", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 51 and out["written"] == str(tmp_path / "hmdb51" / "subactions.jsonl")
    sub = load_subactions(out["written"])
    assert sub["brush hair"][0] == "Taking the brush."
    manifest = json.loads((tmp_path / "hmdb51" / "subactions.manifest.json").read_text())
    assert manifest["source"] == "official release" and "classes_hmdb51.yml" in manifest["files"]

    assert main(["import", "stdd", str(LABEL_DB / "classes_ASKG_hmdb51.yml"), "--dataset", "hmdb51",
                 "--knowledge-root", str(tmp_path)]) == 0  # the xprompt file is found beside it
    records = read_records(tmp_path / "hmdb51" / "action_graph.jsonl")
    assert len(records) == 51 and records[0]["xprompt_oo"] and records[0]["act_rel_triples"]

    assert main(["import", "task_adapter_pp", str(CORPUS), "--dataset", "kinetics100",
                 "--knowledge-root", str(tmp_path)]) == 2
    assert "classes_kinetics100.yml: not found; the task_adapter_pp files in" in capsys.readouterr().err


def test_released_frame_sampling_formula_and_clips(tmp_path):
    import numpy as np
    from PIL import Image

    from mmreason.data.fewshot import ClipLoader, released_segment_indices
    from mmreason.video import segment_indices

    rng = np.random.default_rng(0)
    # test clips: int(tick / 2 + tick * s), tick = 405 / 8 = 50.625 (the TSN centres differ for s = 3 and 6)
    assert released_segment_indices(405, 8, False, rng).tolist() == [25, 75, 126, 177, 227, 278, 329, 379]
    assert segment_indices(405, 8, train=False).tolist() == [25, 75, 126, 176, 227, 278, 328, 379]
    for _ in range(50):  # training: segment s = frames [50 s, 50 s + 50) of 405; frames 400..404 never drawn
        idx = released_segment_indices(405, 8, True, rng)
        assert all(50 * s <= i < 50 * s + 50 for s, i in enumerate(idx))
    assert released_segment_indices(6, 8, True, rng).tolist() == [0, 1, 1, 2, 3, 4, 4, 5]  # short: tick formula

    folder = tmp_path / "frames" / "v0"  # 13 frames whose grey level encodes their index
    folder.mkdir(parents=True)
    for i in range(13):
        Image.fromarray(np.full((32, 32, 3), 15 * i, dtype=np.uint8)).save(folder / f"img_{i + 1:05d}.png")
    records = read_split_file(_write(tmp_path / "s.txt", "frames/v0 13 0\n"), tmp_path,
                              class_list=_write(tmp_path / "c.txt", "walk\n"))
    for sampling, want in (("released", [1, 4, 8, 11]), ("tsn", [1, 4, 7, 11])):
        cfg = FewShotDataConfig(num_frames=4, image_size=32, resize_size=32, frame_template="img_{:05d}.png",
                                frame_sampling=sampling)
        clip = ClipLoader(records, cfg)(0, 0, np.random.default_rng(0), False)  # [T, 3, 32, 32], test clip
        grey = (clip[:, 0].mean(dim=(1, 2)) * 0.26862954 + 0.48145466) * 255  # undo CLIP normalisation
        assert [round(float(g) / 15) for g in grey] == want


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
