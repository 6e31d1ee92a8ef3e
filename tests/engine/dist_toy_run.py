"""Training script for test_engine_distributed.py, run with two processes under ``accelerate launch``.

Usage: dist_toy_run.py RUN_DIR OUT_DIR [CRASH_AT_CALL]. Each process writes OUT_DIR/rank{r}.json with its rank,
the world size, the sample indices it trained on and, when training finished, a digest and the values of its
final parameters, its evaluation results and the logged losses. With CRASH_AT_CALL every process raises on that
call of ``loss`` (a simulated crash) and the script exits with status 3.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from engine_toys import TeacherClassification, ToyClassifier, make_evaluate, params_digest
from mmreason.engine import Trainer
from mmreason.engine.config import TrainConfig

# SGD without momentum on mean losses, a global batch of 8 and half an epoch of warm-up: 2 processes x batch 4
# must equal 1 process accumulating 2 micro-batches of 4, with the same learning-rate schedule.
CONFIG = TrainConfig(seed=0, batch_size=4, global_batch_size=8, warmup_epochs=0.5, optimizer="sgd", momentum=0.0,
                     lr=0.2, max_steps=6, save_every=3, log_every=1, eval_every=3, progress=False)
TRAIN = dict(n=32, seed=7)
EVAL = dict(n=37, seed=7, split=1)  # 37 = not a multiple of 2 processes x batch 4: the gather must drop padding


def main(run_dir: str, out_dir: str, crash_at_call: int | None = None) -> None:
    torch.manual_seed(0)
    model = ToyClassifier(crash_at_call=crash_at_call)
    trainer = Trainer(model, CONFIG, TeacherClassification(**TRAIN),
                      evaluate=make_evaluate(TeacherClassification(**EVAL), batch_size=4), run_dir=run_dir)
    acc = trainer.accelerator
    record = {"rank": acc.process_index, "world_size": acc.num_processes, "distributed_type": str(acc.distributed_type)}
    try:
        result = trainer.fit()
    except RuntimeError as e:  # the simulated crash: both processes stop at the same micro-batch
        record.update(crashed=str(e), seen=model.seen)
    else:
        record.update(
            digest=params_digest(model), params={k: v.tolist() for k, v in model.state_dict().items()},
            eval=[r["metrics"] for r in result.eval_history], seen=model.seen,
            losses={r["step"]: r["loss"] for r in result.history}, lrs=[r["lr"] for r in result.history],
            resumed_from=result.resumed_from.name if result.resumed_from else None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{acc.process_index}.json").write_text(json.dumps(record))
    if "crashed" in record:
        sys.exit(3)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
