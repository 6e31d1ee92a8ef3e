"""The engine on a CUDA device: bf16 chosen by ``mixed_precision=auto``, learning, exact resume (CUDA RNG)."""
from __future__ import annotations


import pytest
import torch

from engine_toys import TeacherClassification, ToyClassifier, make_evaluate
from mmreason.engine import Trainer
from mmreason.engine.checkpoint import read_weights
from mmreason.engine.config import TrainConfig
from mmreason.engine.trainer import resolve_mixed_precision

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CFG = TrainConfig(seed=0, batch_size=16, lr=0.02, epochs=3, log_every=1, eval_every=0, save_every=5,
                  mixed_precision="auto", progress=False)


def _train(run_dir, cfg, data, **model_kwargs):
    torch.manual_seed(0)
    model = ToyClassifier(dropout=0.3, **model_kwargs)
    return model, Trainer(model, cfg, data, evaluate=make_evaluate(TeacherClassification(n=100, seed=0, split=1)),
                          run_dir=run_dir).fit()


def test_cuda_bf16_training_learns_and_resumes_exactly(tmp_path):
    if torch.cuda.is_bf16_supported():
        assert resolve_mixed_precision("auto") == "bf16"
    data = TeacherClassification(n=160, seed=0)  # 10 batches per epoch
    full_model, full = _train(tmp_path / "full", CFG, data)
    assert next(full_model.parameters()).device.type == "cuda"
    assert full.eval_history[-1]["metrics"]["count"] == 100
    assert full.eval_history[-1]["metrics"]["acc"] > 0.6, full.eval_history[-1]
    weights = read_weights(full.last_checkpoint / "model.safetensors")
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in weights.values())

    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(tmp_path / "crashed", CFG, data, crash_at_call=12)
    resumed_model, resumed = _train(tmp_path / "crashed", CFG, data)
    assert resumed.resumed_from.name == "step_0000010"
    tail = [r for r in full.history if r["step"] > 10]
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in tail], abs=1e-6, rel=0)
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
