"""The train / eval workflows through the `mmreason` command as a researcher meets them: stdout holds only the
result JSON, log lines go to stderr, a changed config is one error, ``continue`` resumes, ``eval --output`` keeps
per-class results, ``runs`` lists runs, Ctrl-C saves and stops without a traceback, and the small things."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmreason import api
from mmreason.cli.main import main

REPO = Path(__file__).resolve().parents[2]
CONFIG = "corm/tiny_synthetic"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_resume_eval_output_and_runs(capsys, tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "corm"
    monkeypatch.delenv("MMREASON_PROGRESS")  # the CLI's default: a progress bar, even for a tiny config
    code, out, err = run(capsys, "train", "--config", CONFIG, f"train.output_dir={run_dir}", "train.max_steps=2")
    monkeypatch.setenv("MMREASON_PROGRESS", "0")
    assert code == 0, err
    assert json.loads(out)["global_step"] == 2  # stdout is the result JSON and nothing else
    assert "2/2 [" in err  # the progress bar, on stderr
    assert "mmreason: trainable parameters: " in err and "mmreason: step 2: mAP=" in err  # log lines on stderr

    # a changed learning rate: one line naming the key, nothing trained
    code, out, err = run(capsys, "train", "--config", CONFIG, f"train.output_dir={run_dir}", "train.max_steps=2",
                         "train.lr=0.5")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert re.search(r"^mmreason train: error: .*corm holds a run \(step 2\).*train\.lr: 0\.001 \(run\) -> 0\.5 \(now\)",
                     err)
    # continue: the run's config, trained longer; the ignored lr is named
    code, out, err = run(capsys, "train", "--config", CONFIG, f"train.output_dir={run_dir}", "train.max_steps=3",
                         "train.lr=0.5", "train.resume=continue")
    assert code == 0, err
    assert f"mmreason: resumed from step 2 of {run_dir}" in err and "ignored train.lr" in err
    assert json.loads(out)["global_step"] == 3

    # eval: which checkpoint, metrics JSON alone on stdout, and the kept results file
    results = tmp_path / "corm_test.json"
    code, out, err = run(capsys, "eval", "--checkpoint", str(run_dir), "--output", str(results))
    assert code == 0, err
    metrics = json.loads(out)
    assert f"mmreason: evaluating {run_dir / 'checkpoints' / 'step_0000003'} (step 3) on split 'test'" in err
    record = json.loads(results.read_text())
    assert record["metrics"] == metrics and record["step"] == 3
    from mmreason.methods.corm.pipeline import class_names

    _, cfg = api.load_experiment(run_dir)
    assert sorted(record["per_class"]) == sorted(class_names(cfg))
    aps = [v["AP"] for v in record["per_class"].values() if v["positive_frames"] > 0]
    assert np.mean(aps) == pytest.approx(metrics["mAP"])  # mAP = mean AP over classes with positives
    arrays = np.load(tmp_path / record["arrays_file"])
    first = record["predictions"][0]["scores"]["npz"]
    assert arrays[first].ndim == 2 and arrays[first].shape[1] == len(class_names(cfg))  # [T, C] frame scores

    # runs: method, fingerprint, last step, headline metric
    code, out, _ = run(capsys, "runs", str(tmp_path / "runs"))
    saved = json.loads((run_dir / "config.json").read_text())
    row = next(line for line in out.splitlines() if line.startswith(str(run_dir)))
    assert row.split()[1:4] == ["corm", saved["fingerprint"], "3"] and "mAP=" in row

    # a checkpoint of another method: one line that says so
    code, _, err = run(capsys, "eval", "--config", "vs_transgru/tiny_synthetic", "--checkpoint", str(run_dir))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is a checkpoint of method 'corm', but the config vs_transgru/tiny_synthetic is for 'vs_transgru'" in err


def test_the_same_seed_trains_the_same_weights_whatever_ran_before(tmp_path):
    """The initial weights come from train.seed, not from whatever the process drew before (the model is built
    after seeding), so two runs of one config end with identical weights."""
    import torch
    from safetensors.torch import load_file

    from mmreason.engine.checkpoint import latest_checkpoint

    weights = []
    for name in ("a", "b"):
        torch.rand(7)                                                   # the process's RNG moves on in between
        api.train("icvl/tiny_synthetic", [f"train.output_dir={tmp_path / name}", "train.max_steps=2",
                                          "train.eval_every=-1"])
        weights.append(load_file(latest_checkpoint(tmp_path / name) / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_ctrl_c_ends_train_with_one_line_and_a_saved_state(capsys, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "mmreason.cli.main", "train", "--config", CONFIG, f"train.output_dir={run_dir}",
           "train.max_steps=100000", "train.eval_every=-1", "train.save_every=100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMREASON_PROGRESS": "0"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.jsonl").is_file():  # training has started (corm logs every step)
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
    last = err.strip().splitlines()[-1]
    step = int(re.fullmatch(r"mmreason train: interrupted: stopped at step (\d+) of 100000; state saved in "
                            r"\S+step_\d+; rerun the same command to resume", last).group(1))
    assert sum("interrupted" in line for line in err.splitlines()) == 1
    ckpt = run_dir / "checkpoints" / f"step_{step:07d}"
    assert (ckpt / "trainer_state.pt").is_file() and (ckpt / "model.safetensors").is_file()

    code, out, err = run(capsys, *cmd[3:-3], f"train.max_steps={step + 1}", "train.resume=continue")
    assert code == 0, err
    assert f"resumed from step {step} of {run_dir}" in err and json.loads(out)["global_step"] == step + 1


def test_progress_bars_are_on_in_the_cli_unless_turned_off(monkeypatch):
    from mmreason.cli import commands

    seen = []
    monkeypatch.setattr(commands.api, "train", lambda config, overrides: seen.append(list(overrides)) or
                        type("R", (), {"run_dir": "r", "global_step": 0, "history": [], "eval_history": []})())
    monkeypatch.delenv("MMREASON_PROGRESS")
    main(["train", "--config", CONFIG])  # the tiny config says progress: false; the CLI shows the bar
    main(["train", "--config", CONFIG, "--no-progress"])
    main(["train", "--config", CONFIG, "train.progress=false"])  # an explicit override comes last and wins
    monkeypatch.setenv("MMREASON_PROGRESS", "0")
    main(["train", "--config", CONFIG])
    assert [o[0] for o in seen] == ["train.progress=true", "train.progress=false", "train.progress=true",
                                    "train.progress=false"]
    assert seen[2][-1] == "train.progress=false"


def test_logging_and_the_result_follow_the_process_rank(capsys, monkeypatch):
    import logging

    from mmreason.cli import commands

    monkeypatch.setattr(commands.api, "evaluate", lambda *a, **k: logging.getLogger("mmreason.engine").info(
        "evaluating x") or logging.getLogger("mmreason.engine").warning("careful") or {"acc": 1.0})
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code, out, err = run(capsys, "eval", "--checkpoint", "somewhere")
    assert code == 0 and json.loads(out) == {"acc": 1.0}
    assert err.splitlines() == ["mmreason[0]: evaluating x", "mmreason[0]: warning: careful"]
    monkeypatch.setenv("RANK", "1")
    code, out, err = run(capsys, "eval", "--checkpoint", "somewhere")
    assert code == 0 and out == ""  # the result is printed once, by process 0
    assert err.splitlines() == ["mmreason[1]: warning: careful"]  # info from process 0 only, warnings from all


def test_ls_configs_of_an_unknown_method_is_an_error_with_a_suggestion(capsys):
    code, out, err = run(capsys, "ls", "configs", "--method", "cromm")
    assert code == 2 and out == ""
    assert err.strip() == ("mmreason ls: error: unknown method 'cromm'; did you mean 'corm'? Available: "
                           + ", ".join(api.list_methods()))
    code, out, _ = run(capsys, "ls", "configs", "--method", "corm")
    assert code == 0 and "corm/tiny_synthetic" in out.split()


def test_validate_accepts_overrides(capsys):
    code, out, _ = run(capsys, "validate", CONFIG, "train.lr=3e-4", "--show")
    assert code == 0 and "train.lr = 0.0003" in out and "1 valid, 0 invalid" in out
    code, out, _ = run(capsys, "validate", CONFIG, "train.lrr=3e-4")
    assert code == 1 and "unknown config key 'train.lrr'; did you mean 'lr'?" in out


def _train_help() -> str:
    from mmreason.cli.main import build_parser

    return build_parser()._subparsers._group_actions[0].choices["train"].format_help()


def _help_examples(text: str) -> list[tuple[str, list[str]]]:
    examples = []
    for line in text.splitlines():
        line = line.split("#")[0]
        if " train --config " in line:
            tokens = line.split(" train --config ", 1)[1].split()
            examples.append((tokens[0], [t for t in tokens[1:] if "=" in t]))
    return examples


def test_train_help_examples_are_valid_for_every_method(tmp_path):
    from mmreason.engine import check_train_config

    text = _train_help()
    examples = _help_examples(text)
    assert len(examples) >= 5
    for config, ovr in examples:  # each example command resolves as written
        _, cfg = api.load_experiment(config, ovr)
        check_train_config(cfg.train)
    # every KEY=VALUE the help shows (examples and argument help) means the same thing for every method
    overrides = sorted(set(re.findall(r"\b([a-z_]+(?:\.[a-z_0-9]+)+=[^\s,)`]+)", text)) - {"train.output_dir=runs/stdd_lr3e-4"})
    assert "train.lr=1e-4" in overrides and "train.resume=continue" in overrides
    for method in api.list_methods():
        for config in api.list_configs(method)[:1] + [c for c in api.list_configs(method) if "tiny" in c][:1]:
            for item in overrides:
                _, cfg = api.load_experiment(config, [item])
                check_train_config(cfg.train)
