"""The `mmreason` command: listing, validation, errors, asset generation, and train -> eval on every method's
tiny synthetic config."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmreason import api
from mmreason.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "mmreason.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for sub in ("generate", "train", "eval", "runs", "anticipate", "ls", "validate", "demo"):
        assert sub in out.stdout


def test_ls_lists_registries(capsys):
    code, out, _ = run(capsys, "ls", "backends")
    assert code == 0 and {"hf", "vllm", "replay", "deterministic"} <= {l.split()[0] for l in out.splitlines()}
    code, out, _ = run(capsys, "ls", "assets")
    assert {"subactions", "action_graph", "intentions", "label_semantics"} <= {l.split()[0] for l in out.splitlines()}
    code, out, _ = run(capsys, "ls", "methods")
    assert code == 0
    assert set(l.split()[0] for l in out.splitlines()) == set(api.list_methods())


def test_every_packaged_config_validates(capsys):
    code, out, _ = run(capsys, "validate")
    assert code == 0, out
    assert f"{len(api.list_configs())} valid, 0 invalid" in out


def test_user_errors_are_one_line_and_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--config", "no_such_method/x")
    assert code == 2 and "not found" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    code, _, err = run(capsys, "train", "--config", str(bad))
    assert code == 2 and "bad.yaml" in err
    code, _, err = run(capsys, "anticipate", "--model", "no_such_run", "--observed", "take knife")
    assert code == 2 and "no_such_run" in err and len(err.strip().splitlines()) == 1


def test_generate_with_the_deterministic_backend_records_failures(capsys, tmp_path):
    # hash-derived text never parses as a numbered list: every class fails, and the manifest says why
    cache = ("--cache-dir", str(tmp_path / "llm_cache"))  # this test's own response cache
    code, out, _ = run(capsys, "generate", "subactions", "--dataset", "demo", "--backend", "deterministic",
                       "--knowledge-root", str(tmp_path), *cache, "--max-attempts", "2", "--no-embed")
    assert code == 1  # items without a record: a non-zero exit (--allow-failures: 0)
    summary = json.loads(out[out.index("{"):])
    assert summary["items"] == 4 and summary["failed"] == 4 and summary["generated"] == 8
    manifest = json.loads((tmp_path / "demo" / "subactions.manifest.json").read_text())
    assert len(manifest["failures"]) == 4
    assert all(len(f["failed_requests"][0]["attempts"]) == 2 for f in manifest["failures"])
    # the dry run replays the same attempts from the cache; a third attempt would be new
    code, out, _ = run(capsys, "generate", "subactions", "--dataset", "demo", "--backend", "deterministic",
                       "--knowledge-root", str(tmp_path), *cache, "--dry-run", "--max-attempts", "2")
    assert code == 0 and "[HIT ] brush hair" in out and "8 cached, 0 to generate" in out
    code, out, _ = run(capsys, "generate", "subactions", "--dataset", "demo", "--backend", "deterministic",
                       "--knowledge-root", str(tmp_path), *cache, "--dry-run", "--max-attempts", "3")
    assert "8 cached, 4 to generate" in out


TINY = [name for name in api.list_configs() if name.endswith("/tiny_synthetic")]


@pytest.mark.parametrize("config", TINY)
def test_train_then_eval_each_method(capsys, tmp_path, config):
    run_dir = tmp_path / "run"
    # wiring only (learning is tested per method): a few steps are enough
    code, out, err = run(capsys, "train", "--config", config, f"train.output_dir={run_dir}", "train.progress=false",
                         "train.max_steps=6")
    assert code == 0, err
    result = json.loads(out)  # stdout holds the result JSON and nothing else
    assert result["global_step"] == 6
    assert (run_dir / "config.json").is_file()
    code, out, err = run(capsys, "eval", "--checkpoint", str(run_dir))
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics and all(isinstance(v, (int, float, str, list, dict)) for v in metrics.values())
    assert f"evaluating {run_dir / 'checkpoints' / 'step_0000006'} (step 6)" in err
