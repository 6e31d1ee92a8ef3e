"""Worker of test_open_mede_two_processes: 3 meta-optimised steps of the tiny Open-MeDe, one JSON per rank."""
import json
import sys
from pathlib import Path

import torch

from mmreason.config import merge, read_yaml
from mmreason.engine import Trainer
from mmreason.methods.open_mede import METHOD

CONFIG = Path(__file__).resolve().parents[2] / "mmreason" / "methods" / "open_mede" / "configs" / "tiny_synthetic.yaml"

if __name__ == "__main__":
    run_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    cfg = merge(METHOD.config_cls(), read_yaml(CONFIG))
    cfg = merge(cfg, {"train": {"output_dir": str(run_dir), "max_steps": 3, "batch_size": 8}})
    torch.manual_seed(0)
    model = METHOD.build_model(cfg)
    initial = [p.detach().clone() for p in model.vision.parameters()]
    trainer = Trainer(model, cfg.train, METHOD.build_dataset(cfg, "train"), collate_fn=METHOD.collate_fn,
                      run_dir=run_dir, config=cfg)
    result = trainer.fit()
    acc = trainer.accelerator
    weights = torch.cat([p.detach().flatten() for p in model.vision.parameters()])
    change = sum(float((p.detach() - q).abs().sum()) for p, q in zip(model.vision.parameters(), initial))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"rank{acc.process_index}.json").write_text(json.dumps({
        "rank": acc.process_index, "world_size": acc.num_processes, "steps": result.global_step,
        "checksum": float(weights.double().sum()), "head": weights[:8].tolist(), "change": change,
        "meta_logged": "loss_virtual_eval" in result.history[-1] if result.history else False}))
