"""Weight averaging: coefficient rules against hand computations, and averaging real checkpoint files."""
from __future__ import annotations

import json
import math

import pytest
import torch

from engine_toys import ToyClassifier
from mmreason.engine import average_checkpoints, averaging_coefficients, load_checkpoint, save_averaged
from mmreason.engine.averaging import weighted_average
from mmreason.engine.checkpoint import save_weights, trainable_state_dict


@pytest.mark.parametrize("method", ["uniform", "gaussian", "beta", "ema"])
@pytest.mark.parametrize("n", [1, 2, 5, 23])
def test_coefficients_sum_to_one(method, n):
    w = averaging_coefficients(n, method)
    assert len(w) == n and sum(w) == pytest.approx(1.0) and all(x >= 0 for x in w)


def test_gaussian_matches_hand_computation_and_peaks_at_its_mean():
    # STDD's gwa: epochs 0..22 (raw CLIP = epoch 0), mean 15, std 10
    w = averaging_coefficients(23, "gaussian", mean=15, std=10)
    raw = [math.exp(-0.5 * ((e - 15) / 10) ** 2) for e in range(23)]
    assert w == pytest.approx([r / sum(raw) for r in raw])
    assert max(range(23), key=w.__getitem__) == 15
    assert w[10] == pytest.approx(w[20]) and w[14] < w[15] > w[16]
    # positions may be given explicitly (e.g. epoch numbers of a window 2..22)
    w2 = averaging_coefficients(3, "gaussian", positions=[2, 15, 22], mean=15, std=10)
    assert max(range(3), key=w2.__getitem__) == 1


def test_beta_matches_hand_computation():
    n, a, b = 4, 0.5, 0.5
    xs = [(i + 0.5) / n for i in range(n)]
    raw = [x ** (a - 1) * (1 - x) ** (b - 1) for x in xs]
    w = averaging_coefficients(n, "beta", alpha=a, beta=b)
    assert w == pytest.approx([r / sum(raw) for r in raw])
    assert w[0] == pytest.approx(w[3]) and w[0] > w[1]  # Beta(0.5, 0.5) favours both ends
    late = averaging_coefficients(5, "beta", alpha=5, beta=1)
    assert late == sorted(late)  # Beta(5, 1) favours the newest


def test_ema_equals_the_running_average_and_weights_newest_most():
    decay, n = 0.5, 4
    # run avg = decay * avg + (1 - decay) * ckpt on one-hot "checkpoints": the result is the weight vector
    avg = [1.0, 0.0, 0.0, 0.0]
    for i in range(1, n):
        avg = [decay * a + (1 - decay) * (1.0 if j == i else 0.0) for j, a in enumerate(avg)]
    w = averaging_coefficients(n, "ema", decay=decay)
    assert w == pytest.approx(avg)
    assert w == pytest.approx([0.125, 0.125, 0.25, 0.5])
    assert w[-1] == max(w)


def test_bad_parameters_fail():
    with pytest.raises(ValueError, match="not one of"):
        averaging_coefficients(3, "median")
    with pytest.raises(ValueError, match="std > 0"):
        averaging_coefficients(3, "gaussian", std=0)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        averaging_coefficients(2, "beta", positions=[0.0, 0.5])
    with pytest.raises(ValueError, match="2 positions for 3"):
        averaging_coefficients(3, "gaussian", positions=[1, 2])


def _write(tmp_path, name, state):
    folder = tmp_path / name
    save_weights(state, folder / "model.safetensors")
    return folder


def test_averaging_files(tmp_path):
    g = torch.Generator().manual_seed(0)
    states = [{"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g),
               "count": torch.tensor(i)} for i in range(3)]
    paths = [_write(tmp_path, f"step_{i}", s) for i, s in enumerate(states)]

    # uniform of two = elementwise mean; integer tensors come from the newest
    two = average_checkpoints(paths[:2], "uniform")
    torch.testing.assert_close(two["w"], (states[0]["w"] + states[1]["w"]) / 2)
    assert two["count"].item() == 1
    # any rule over identical checkpoints returns that checkpoint
    same = [paths[0]] * 3
    for method in ("uniform", "gaussian", "beta", "ema"):
        out = average_checkpoints(same, method)
        torch.testing.assert_close(out["w"], states[0]["w"], rtol=0, atol=1e-6)
    # gaussian over three = the coefficient-weighted sum
    coef = averaging_coefficients(3, "gaussian", mean=1, std=0.5)
    out = average_checkpoints(paths, "gaussian", mean=1, std=0.5)
    torch.testing.assert_close(out["b"], sum(c * s["b"] for c, s in zip(coef, states)))
    torch.testing.assert_close(out, weighted_average(states, coef))
    # the initial weights enter as checkpoint 0 (Open-MeDe's "CLIP as epoch 0")
    with_init = average_checkpoints(paths[1:], "uniform", initial=states[0])
    torch.testing.assert_close(with_init["w"], sum(s["w"] for s in states) / 3)

    _write(tmp_path, "odd", {"w": states[0]["w"], "count": torch.tensor(0)})
    with pytest.raises(ValueError, match=r"odd: its weights differ.*missing \['b'\]"):
        average_checkpoints([paths[0], tmp_path / "odd"])


def test_save_averaged_writes_a_loadable_checkpoint(tmp_path):
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.append(ToyClassifier())
    paths = [_write(tmp_path, f"ckpt{i}", trainable_state_dict(m)) for i, m in enumerate(models)]
    (paths[1] / "config.json").write_text('{"type": "x", "config": {}}')
    out = save_averaged(paths, tmp_path / "averaged" / "swa", "uniform")

    target = ToyClassifier()
    load_checkpoint(target, out)
    torch.testing.assert_close(target.head.weight, (models[0].head.weight + models[1].head.weight) / 2)
    record = json.loads((out / "averaging.json").read_text())
    assert record["method"] == "uniform" and record["coefficients"] == [0.5, 0.5]
    assert (out / "config.json").read_text() == (paths[1] / "config.json").read_text()
