"""Open-MeDe's first-order cross-batch step and static mixes (reconstructed, specs §4)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmreason.methods.open_mede.meta import class_disjoint_split, first_order_cross_batch, static_mix, virtual_step


class Quadratic(nn.Module):
    """L(θ; c) = 1/2 ||A θ - c||^2 — gradient Aᵀ(Aθ - c)."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        self.A = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 3.0]], dtype=torch.float64)

    def loss(self, c):
        r = self.A @ self.theta - c
        return 0.5 * (r * r).sum()


def test_first_order_cross_batch_step_is_the_analytic_update():
    model = Quadratic()
    a, b = torch.tensor([0.3, 1.0, -1.0], dtype=torch.float64), torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    alpha, lam, beta = 0.1, 0.5, 0.05
    theta0, A = model.theta.detach().clone(), model.A
    g_a = A.T @ (A @ theta0 - a)
    theta_virtual = theta0 - alpha * g_a
    g_b = A.T @ (A @ theta_virtual - b)
    expected_loss = 0.5 * ((A @ theta0 - a) ** 2).sum() + lam * 0.5 * ((A @ theta_virtual - b) ** 2).sum()

    opt = torch.optim.SGD(model.parameters(), lr=beta)
    out = first_order_cross_batch([model.theta], model.loss, a, b, alpha, lam, inner_step="sgd")
    assert torch.equal(model.theta.detach(), theta0)  # parameters restored after the virtual step
    assert out["loss"].item() == pytest.approx(expected_loss.item(), rel=1e-12)
    out["loss"].backward()
    torch.testing.assert_close(model.theta.grad, g_a + lam * g_b)
    opt.step()
    torch.testing.assert_close(model.theta.detach(), theta0 - beta * (g_a + lam * g_b))


def test_zero_weight_is_plain_gradient_descent_on_the_first_batch():
    model = Quadratic()
    a = torch.zeros(3, dtype=torch.float64)
    out = first_order_cross_batch([model.theta], model.loss, a, a + 5, 0.3, 0.0, inner_step="sgd")
    out["loss"].backward()
    torch.testing.assert_close(model.theta.grad, model.A.T @ (model.A @ model.theta.detach() - a))


def test_relative_virtual_step_moves_each_tensor_by_a_fraction_of_its_rms():
    w = nn.Parameter(torch.tensor([[3.0, -4.0], [0.0, 0.0]]))  # rms = sqrt(25 / 4) = 2.5
    b = nn.Parameter(torch.zeros(2))  # all-zero weights do not move
    gw, gb = torch.tensor([[1.0, 1.0], [-1.0, 3.0]]), torch.tensor([0.5, -0.5])  # rms(gw) = sqrt(12 / 4)
    w0 = w.detach().clone()
    steps = virtual_step([w, b], [gw, gb], 0.01, "relative")
    expected = 0.01 * 2.5 * gw / 3 ** 0.5
    torch.testing.assert_close(steps[0], expected)
    torch.testing.assert_close(w.detach(), w0 - expected)
    assert torch.equal(b.detach(), torch.zeros(2))
    # the same relative step whatever the gradient's scale (an SGD step would shrink 1e6-fold)
    w.data.copy_(w0)
    torch.testing.assert_close(virtual_step([w], [gw * 1e-6], 0.01, "relative")[0], expected)
    with pytest.raises(ValueError, match="virtual-step rule"):
        virtual_step([w], [gw], 0.01, "adam")


def test_class_disjoint_split():
    labels = torch.tensor([3, 3, 1, 7, 7, 7, 2, 1, 5, 2])
    a, b = class_disjoint_split(labels, torch.Generator().manual_seed(0))
    assert set(labels[a].tolist()).isdisjoint(labels[b].tolist())
    assert sorted(a.tolist() + b.tolist()) == list(range(10)) and abs(len(a) - len(b)) <= 3
    assert class_disjoint_split(torch.tensor([4, 4, 4])) is None


def _meta_gradient(model, batch, **overrides):
    """The gradient of the model's training loss on ``batch`` with model-config ``overrides`` (no mixes)."""
    from dataclasses import replace

    saved = model.cfg
    model.cfg = replace(saved, debias_prob=0.0, mix_prob=0.0, **overrides)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    torch.manual_seed(0)
    model.loss(batch)["loss"].backward()
    model.cfg = saved
    return torch.cat([p.grad.flatten() for p in params])


def test_default_meta_gradient_differs_from_training_without_the_virtual_step(tiny_experiment):
    """At the default meta settings the virtual step changes the update clearly; the old SGD virtual step at the
    base lr (3.33e-6) left it unchanged to 1e-4 (the issue measured 0.08 % on ViT-B/16)."""
    method, cfg = tiny_experiment("open_mede")
    defaults = type(cfg.model)()
    assert (cfg.model.meta_inner_step, cfg.model.meta_inner_lr, cfg.model.meta_weight, cfg.model.meta_pairing) == (
        defaults.meta_inner_step, defaults.meta_inner_lr, defaults.meta_weight, defaults.meta_pairing)
    torch.manual_seed(0)
    model = method.build_model(cfg)
    dataset = method.build_dataset(cfg, "train")
    batch = method.collate_fn([dataset[i] for i in range(0, 96, 4)])  # 24 videos of 18 classes
    meta = _meta_gradient(model, batch)
    no_step = _meta_gradient(model, batch, meta_inner_lr=0.0)  # the same update without the virtual step
    old = _meta_gradient(model, batch, meta_inner_step="sgd", meta_inner_lr=3.33e-6)
    rel = lambda x, y: float((x - y).norm() / y.norm())  # noqa: E731
    assert rel(meta, no_step) > 0.1
    assert rel(old, no_step) < 1e-3


def test_static_mix_blends_with_a_repeated_frame():
    torch.manual_seed(0)
    frames = torch.randn(4, 5, 3, 2, 2)
    assert torch.equal(static_mix(frames, frames, 0.0), frames)
    mixed = static_mix(frames, frames, 1.0, (20.0, 20.0), exclude_self=True)
    static = mixed - frames  # = (1 - λ)(s - x)
    # recover λ per video from one frame pair and check that s is constant over time and from another video
    for i in range(4):
        found = False
        for j in range(4):
            if j == i:
                continue
            for t in range(5):
                s = frames[j, t]
                lam = 1 - static[i, 0].flatten() @ (s - frames[i, 0]).flatten() / ((s - frames[i, 0]) ** 2).sum()
                if torch.allclose(mixed[i], lam * frames[i] + (1 - lam) * s, atol=1e-5):
                    found = 0.3 < lam < 0.7  # Beta(20, 20) concentrates around 0.5
        assert found


def _static_bias_task(seed: int = 0, tint_strength: float = 0.5):
    """Moving squares whose class is (direction, colour); every training video of class k also carries the
    background tint of class k (a static shortcut); test videos carry a random class's tint (out of context).
    Returns the training tensors, the seen-class and unseen-class test tensors and their text features."""
    import math

    import numpy as np

    from mmreason.data.fewshot import SyntheticClass, synthetic_video

    directions, colours, frames, size, dim = 4, 4, 4, 32, 32
    every = [SyntheticClass(d, c, directions) for d in range(directions) for c in range(colours)]
    unseen = [SyntheticClass(k, (k + 1) % colours, directions) for k in range(4)]
    seen = [k for k in every if k not in unseen]  # 12 seen classes; each direction and colour stays seen
    g = torch.Generator().manual_seed(7)
    motion, colour = torch.randn(directions, dim, generator=g), torch.randn(colours, dim, generator=g)

    def text(classes):  # compositional class text features [K, P=4, E], as the synthetic zero-shot task's
        base = torch.stack([motion[k.direction] + colour[k.colour] for k in classes]) / math.sqrt(2)
        return F.normalize(base[:, None] + 0.3 * torch.randn(len(classes), 4, dim, generator=g), dim=-1)

    text_seen, text_unseen = text(seen), text(unseen)
    tints = torch.rand(len(seen), 3, generator=g) * 2 - 1

    def videos(classes, per_class, rng_seed, shortcut):
        rng = np.random.default_rng(rng_seed)
        xs, ys = [], []
        for k, cls in enumerate(classes):
            for _ in range(per_class):
                tint = tints[k] if shortcut else tints[rng.integers(len(tints))]
                xs.append(synthetic_video(cls, rng, frames, size) + tint_strength * tint.view(1, 3, 1, 1))
                ys.append(k)
        return torch.stack(xs), torch.tensor(ys)

    return (videos(seen, 8, seed, True), videos(seen, 10, seed + 1, False), videos(unseen, 20, seed + 2, False),
            text_seen, text_unseen)


def _train_out_of_context(tiny_experiment, task, steps: int, **model_overrides) -> tuple[float, float, float]:
    """Train the tiny Open-MeDe (default meta settings unless overridden) on the biased videos; top-1 (%) on
    in-context seen videos, out-of-context seen videos and out-of-context unseen classes."""
    (x, y), (xs, ys), (xu, yu), text_seen, text_unseen = task
    method, cfg = tiny_experiment("open_mede", model=model_overrides)
    torch.manual_seed(0)
    model = method.build_model(cfg)
    model.register_buffer("train_prompts", text_seen.clone(), persistent=False)  # the task's seen classes
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.01)
    order = torch.Generator().manual_seed(100)
    step = 0
    while step < steps:
        perm = torch.randperm(len(y), generator=order)
        for i in range(0, len(perm) - 23, 24):
            idx = perm[i:i + 24]
            model.train()
            loss = model.loss({"frames": x[idx], "labels": y[idx]})["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    model.eval()
    with torch.no_grad():
        acc = lambda v, t, labels: 100.0 * float((model.logits(v, t).argmax(1) == labels).float().mean())  # noqa: E731
        return acc(x, text_seen, y), acc(xs, text_seen, ys), acc(xu, text_unseen, yu)


@pytest.mark.slow
def test_open_mede_beats_plain_training_out_of_context(tiny_experiment):
    """Static-bias task: a background tint identifies the class in training, not at test. Plain training
    (model.meta_weight=0: no virtual step, no static mixes) relies on the tint; Open-MeDe at its default settings
    (cross-batch virtual evaluation on class-disjoint sub-batches with static mixes) also learns motion and
    colour, and recognises seen and, above all, unseen classes out of context.

    Measured (this task, seeds 0 / 1, 600 steps; top-1 % seen / unseen out of context, chance 8.3 / 25):
    plain 18.3 / 23.7 and 17.5 / 18.8; Open-MeDe 30.0 / 38.7 and 20.8 / 37.5. Seed 0 with the static mixes off
    (virtual step kept): 18.3 / 20.0; with the virtual step off (mixes kept): 23.3 / 43.8 - the gain comes from
    the scheme's out-of-context sub-batches, the virtual step adds none here."""
    task = _static_bias_task(seed=0)
    plain = _train_out_of_context(tiny_experiment, task, 600, meta_weight=0.0)
    open_mede = _train_out_of_context(tiny_experiment, task, 600)
    unseen_chance = 100.0 / 4
    assert plain[0] > 95.0 and open_mede[0] > 95.0  # both fit the (biased) training videos
    assert open_mede[1] >= plain[1] + 5.0  # seen classes, random tint
    assert open_mede[2] >= plain[2] + 10.0 and open_mede[2] > unseen_chance + 10.0  # unseen classes, random tint
