"""Open-MeDe's in-loss meta step under two real processes (torchrun, gloo on CPU): ranks stay in sync."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("open_mede_dist_run.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_open_mede_two_processes_stay_in_sync(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.fail(f"{torchrun} not found: torchrun is needed for the two-process test")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(SCRIPT), str(tmp_path / "run"),
           str(tmp_path / "out")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("rank*.json"))]
    assert [(r["rank"], r["world_size"], r["steps"]) for r in ranks] == [(0, 2, 3), (1, 2, 3)]
    assert ranks[0]["head"] == ranks[1]["head"] and ranks[0]["checksum"] == ranks[1]["checksum"]
    assert ranks[0]["change"] > 0 and ranks[0]["meta_logged"]
