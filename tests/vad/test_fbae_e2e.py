"""FBAE end to end: the engine's Trainer on the tiny config, checkpoint reload, evaluation."""
from pathlib import Path

import pytest
import torch

from mmreason.config import apply_overrides, merge, read_yaml
from mmreason.methods.fbae import METHOD, FbaeExperiment

TINY_YAML = Path(__file__).resolve().parents[2] / "mmreason" / "methods" / "fbae" / "configs" / "tiny_synthetic.yaml"


@pytest.mark.slow
def test_fbae_tiny_trainer_run_and_reload(tmp_path, one_torch_thread):
    from mmreason.engine import Trainer, load_checkpoint

    cfg = apply_overrides(merge(FbaeExperiment(), read_yaml(TINY_YAML)),
                          [f"train.output_dir={tmp_path / 'run'}", "train.max_steps=10"])
    model = METHOD.build_model(cfg)
    result = Trainer(model, cfg.train, METHOD.build_dataset(cfg, "train"), collate_fn=METHOD.collate_fn,
                     run_dir=cfg.train.output_dir, config=cfg).fit()
    assert result.global_step == 10 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    metrics = METHOD.evaluate(model, cfg, "test", None)
    reloaded = METHOD.build_model(cfg)
    load_checkpoint(reloaded, cfg.train.output_dir)
    again = METHOD.evaluate(reloaded, cfg, "test", None)
    assert again == pytest.approx(metrics, abs=1e-6)  # BN statistics travel too: every metric, each horizon


def test_fbae_object_crops_from_the_track_cache(sht_object_tree):
    """FBAE on the object-centric path ADSM uses: frame folders -> detections (external track ids) -> track
    cache -> object clips -> per-object errors -> frame scores (max over the objects of a frame)."""
    import numpy as np
    from torch import nn

    from mmreason.data.vad import TrackCache

    root, tracks = sht_object_tree
    cfg = apply_overrides(FbaeExperiment(), {
        "model": dict(image_size=32, obs_frames=2, future_frames=2, widths=[8, 16], latent_channels=2),
        "data": dict(dataset="shanghaitech", root=str(root), num_scenes=13, input="object_crops",
                     track_cache=str(tracks), scene_image_frames=4),
        "eval": dict(batch_size=8, anticipation_horizons=[2, 4], calibration_clips=5)})
    train = METHOD.build_dataset(cfg, "train")
    assert len(train) == 2 * (7 + 3)  # per video: 7 windows of the 10-frame track 7 + 3 of the 6-frame track 9
    item = train[0]
    assert item["clip"].shape == (4, 3, 32, 32) and item["scene_image"].shape == (3, 32, 32)
    assert int(item["track"]) == 7 and item["frames"].tolist() == [0, 1, 2, 3]

    class Zeros(nn.Module):  # predicts black frames: the detection error of a clip is its future crops' mean square
        def __init__(self):
            super().__init__()
            self.unused = nn.Parameter(torch.zeros(1))  # gives the model a device

        def forward(self, x, scene, sample=False):
            return x.new_zeros(len(x), 2, 3, 32, 32), x.new_zeros(len(x))

    model = METHOD.build_model(cfg).eval()
    model.forward_net, model.backward_net = Zeros(), Zeros()
    from mmreason.methods.fbae.evaluation import score_videos
    from mmreason.metrics.anomaly import anticipation_auc, frame_auc_micro

    metrics = METHOD.evaluate(model, cfg, "test")
    test = METHOD.build_dataset(cfg, "test")
    scored = score_videos(model, test, cfg)
    labels = [v.labels for v in test.videos]
    assert metrics["auc_micro"] == pytest.approx(frame_auc_micro(scored["detection"], labels))
    assert metrics["vaa_auc_4"] == pytest.approx(anticipation_auc(scored["anticipation"][4], labels, 4))
    got = scored["detection"][0]  # video 01_0014
    cached = TrackCache(tracks / "test").read("01_0014")
    neg_psnr = lambda rows: 10 * np.log10(np.mean((cached.crops[rows].astype(np.float32) / 255) ** 2))
    raw = np.full(10, np.nan)
    for f in range(2, 9):  # first predicted frame of a clip: track 7 covers frames 2..8, track 9 frames 2..4
        rows = [r for r in np.flatnonzero(cached.frame == f) if cached.track_id[r] == 7 or f <= 4]
        raw[f] = max(neg_psnr([r]) for r in rows)
    raw[np.isnan(raw)] = np.nanmin(raw)  # frames without a clip take the video minimum
    assert np.allclose(got, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-5)

    with pytest.raises(ValueError, match="track cache"):
        METHOD.build_dataset(apply_overrides(cfg, ["data.track_cache="]), "train")
    with pytest.raises(ValueError, match="32px crops but the model.s image_size is 16"):
        METHOD.build_dataset(apply_overrides(cfg, ["model.image_size=16"]), "test")
