"""Space-time Cross Attention: no new parameters, token budget, channel shift, block order (STDD §3.1)."""
import copy

import pytest
import torch

from mmreason.clip.towers import block_attention, block_forward, block_mlp
from mmreason.methods.stdd.stca import (STCrossAttentionTower, masked_slot_patterns, st_cross_attention_block,
                                        temporal_channel_shift, window_keep_indices)


def test_stca_tower_has_exactly_the_parameters_of_clip(tiny64):
    plain = copy.deepcopy(tiny64.vision)
    stca = STCrossAttentionTower(copy.deepcopy(tiny64.vision), channel_fold=8)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(stca) == count(plain) > 0
    assert [n.removeprefix("tower.") for n, _ in stca.named_parameters()] == [n for n, _ in plain.named_parameters()]


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.75])
def test_kept_tokens_per_frame(rate):
    grid = 4  # P = 16 patches
    keep = window_keep_indices(3, 8, grid, rate, train=True, temporal_shuffle=True,
                               generator=torch.Generator().manual_seed(0))
    assert keep.shape == (3, 8, int((1 - rate) * grid * grid))  # + CLS = 1 + (1 - rate) P tokens per frame
    for row in keep.flatten(0, 1):
        assert len(set(row.tolist())) == len(row) and 0 <= row.min() and row.max() < grid * grid


def test_masks_rotate_through_each_window():
    # released pattern: [1,1,0,0] rotated right by t; frames t and t+2 keep complementary slots
    pat = masked_slot_patterns(4, 0.5)[0].int().tolist()
    assert pat == [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1]]
    keep = window_keep_indices(1, 4, 4, 0.5, train=False, temporal_shuffle=False)[0]  # [T, 8]
    assert set(keep[0].tolist()) | set(keep[2].tolist()) == set(range(16))
    assert not set(keep[0].tolist()) & set(keep[2].tolist())
    # window (0, 0) covers patches 0, 1, 4, 5; frame 0 masks its slots 0 and 1 (patches 0, 1)
    assert {4, 5} <= set(keep[0].tolist()) and not {0, 1} & set(keep[0].tolist())


def test_channel_shift_scale_one_moves_exactly_the_fold():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 64)
    y = temporal_channel_shift(x, 1, channel_fold=8)  # d0 = 8
    expected = x.clone()
    expected[:, :, :, :8] = 0
    expected[:, 1:, :, :8] = x[:, :-1, :, :8]  # forward by one frame, zeros at t = 0
    expected[:, :, :, 8:16] = 0
    expected[:, :-1, :, 8:16] = x[:, 1:, :, 8:16]  # backward by one frame, zeros at t = T - 1
    assert torch.equal(y, expected)
    assert torch.equal(temporal_channel_shift(x, 0, 8), x)


def test_channel_shift_scale_two_follows_the_released_passes():
    x = torch.randn(1, 6, 2, 32)
    y = temporal_channel_shift(x, 2, channel_fold=4)  # d0 = 8: pass 1 shifts 8 + 8 channels by 1, pass 2 4 + 4 by 2
    assert torch.equal(y[..., 16:], x[..., 16:])
    assert torch.equal(y[:, 2:, :, :4], x[:, :-2, :, :4])  # channels [0, 4) by 2 frames
    assert torch.equal(y[:, 1:, :, 4:8], x[:, :-1, :, 4:8])  # channels [4, 8) by 1 frame
    assert torch.equal(y[:, :-2, :, 12:16], x[:, 2:, :, 12:16])  # channels [12, 16) back by 2
    assert torch.equal(y[:, :-1, :, 8:12], x[:, 1:, :, 8:12])  # channels [8, 12) back by 1
    assert torch.equal(y[:, 1, :, :4], x[:, 0, :, :4])  # frame 1 keeps the shift-1 value (pass 2 starts at t = 2)
    assert y[:, 0, :, :8].abs().sum() == 0 and y[:, -1, :, 8:16].abs().sum() == 0  # zero padding at the ends


def test_rate_zero_without_shift_is_the_plain_block(tiny64):
    torch.manual_seed(1)
    block = tiny64.vision.blocks[0]
    x = torch.randn(2 * 4, 17, 64)  # B = 2, T = 4, CLS + 16 patches
    keep = window_keep_indices(2, 4, 4, 0.0, train=True)
    out = st_cross_attention_block(block, x, 4, keep, temporal_scales=[0], channel_fold=8)
    torch.testing.assert_close(out, block_forward(block, x), rtol=1e-5, atol=1e-5)


def test_mlp_reads_the_full_path(tiny64):
    """Masked positions get x_full + mlp(ln_2(x_full)), i.e. the plain block's output; kept positions get the
    sparse attention output + mlp(ln_2(x_full)) — not the plain block (the released MLP-input detail)."""
    torch.manual_seed(2)
    block = tiny64.vision.blocks[1]
    x = torch.randn(1 * 4, 17, 64)
    keep = window_keep_indices(1, 4, 4, 0.5, train=False, temporal_shuffle=False)
    out = st_cross_attention_block(block, x, 4, keep, temporal_scales=[1, 2], channel_fold=8).view(4, 17, 64)
    plain = block_forward(block, x).view(4, 17, 64)
    full = x + block_attention(block, x)
    for t in range(4):
        kept = set((keep[0, t] + 1).tolist())
        masked = [i for i in range(1, 17) if i not in kept]
        torch.testing.assert_close(out[t, masked], plain[t, masked], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(out[t, sorted(kept)], plain[t, sorted(kept)], atol=1e-4)
    # and the MLP term is computed from x_full: out - padded == mlp(ln_2(full)) at masked positions
    mlp_full = block_mlp(block, full).view(4, 17, 64)
    masked0 = [i for i in range(1, 17) if i not in set((keep[0, 0] + 1).tolist())]
    torch.testing.assert_close(out[0, masked0] - full.view(4, 17, 64)[0, masked0], mlp_full[0, masked0])


def test_tower_rate_zero_no_shift_matches_clip(tiny64):
    torch.manual_seed(3)
    plain = copy.deepcopy(tiny64.vision).eval()
    stca = STCrossAttentionTower(copy.deepcopy(tiny64.vision), mask_rate=0.0, temporal_scales=[0]).eval()
    frames = torch.randn(2, 4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(stca(frames), plain(frames), rtol=1e-4, atol=1e-5)
        a, b = (STCrossAttentionTower(copy.deepcopy(tiny64.vision), channel_fold=8).eval()(frames) for _ in range(2))
    torch.testing.assert_close(a, b)  # the seeded test-time shuffle makes evaluation deterministic


def test_bad_grid_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        window_keep_indices(1, 2, 3, 0.5)
