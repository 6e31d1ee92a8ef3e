"""Open-MeDe: Learning to Generalize without Bias for Open-Vocabulary Action Recognition (Yu, Cao, Zhang, Zhang;
ICCV 2025; arXiv 2502.20158).

The paper's method sections and code were not available (specs/clip_action_recognition.md §4); everything
below except the three ideas named in its abstract is a **reconstruction**, each choice a config field:

* cross-batch meta-optimisation (abstract; first-order with a virtual step, as the STDD repo's
  ``expand_FOMAML_virtual`` experiments suggest): :func:`~mmreason.methods.open_mede.meta.first_order_cross_batch`
  inside :meth:`OpenMeDeModel.loss`. **Batch layout**: the engine owns the loop and hands ``loss`` one batch;
  its first half is the virtual-train batch ``B_i`` and its second half the subsequent batch ``B_(i+1)`` used as
  the virtual evaluation (``train.batch_size`` = 2 x the sub-batch size). No engine hook is needed.
  Fields: ``model.meta_inner_lr`` (α), ``model.meta_weight`` (λ); the outer step β is ``train.lr``.
* static debiasing (STDD repo keys ``CROSS_BATCH_META_DEBIAS`` / ``_MIX``, Beta(20, 20)):
  :func:`~mmreason.methods.open_mede.meta.static_mix` on the training clips (``model.debias_prob``,
  ``model.mix_prob``, ``model.mix_beta``).
* no CLIP regularisation (abstract): no frozen teacher, no distillation (``distill_weight`` must be 0).
* self-ensemble over the optimisation trajectory (abstract; ``gwa_0_22`` in the STDD repo): Gaussian weight
  averaging of the epoch checkpoints with the initial CLIP as checkpoint 0 (``average`` section;
  :func:`mmreason.methods.open_mede.self_ensemble`).

The video learner is STDD's CLIP video model (:class:`~mmreason.methods.stdd.model.ZeroShotVideoCLIP`; by default
with Space-time Cross Attention — Open-VCLIP's ``expand_temporal_view`` is not implemented) scored against a
fixed text classifier.
"""
from __future__ import annotations

import torch.nn.functional as F

from mmreason.methods.open_mede.meta import first_order_cross_batch, static_mix
from mmreason.methods.stdd.model import ZeroShotVideoCLIP, check_trainable


class OpenMeDeModel(ZeroShotVideoCLIP):
    """CLIP video learner whose ``loss`` runs one first-order cross-batch meta step on the batch's two halves."""

    def __init__(self, cfg, train_prompts, towers):
        if cfg.distill_weight != 0:
            raise ValueError("Open-MeDe uses no CLIP regularisation: model.distill_weight must be 0")
        super().__init__(cfg, train_prompts, towers)

    def classification_loss(self, sub_batch) -> "torch.Tensor":  # noqa: F821
        frames, labels = sub_batch
        return F.cross_entropy(self.forward(frames), labels)

    def loss(self, batch: dict) -> dict:
        frames, labels = batch["frames"], batch["labels"]  # [B, T, 3, H, W], [B]
        check_trainable(self)
        cfg = self.cfg
        if cfg.meta_weight == 0 or len(labels) < 2:
            frames = static_mix(frames, frames, cfg.debias_prob, cfg.mix_beta, exclude_self=True)
            ce = F.cross_entropy(self.forward(frames), labels)
            return {"loss": ce, "ce": ce.detach()}
        half = len(labels) // 2
        frames_a, frames_b = frames[:half], frames[half:]  # B_i (virtual train), B_(i+1) (virtual evaluation)
        mixed_a = static_mix(frames_a, frames_a, cfg.debias_prob, cfg.mix_beta, exclude_self=True)
        mixed_a = static_mix(mixed_a, frames_b, cfg.mix_prob, cfg.mix_beta)  # static clips from the next batch
        mixed_b = static_mix(frames_b, frames_b, cfg.debias_prob, cfg.mix_beta, exclude_self=True)
        return first_order_cross_batch(list(self.vision.parameters()), self.classification_loss,
                                       (mixed_a, labels[:half]), (mixed_b, labels[half:]),
                                       cfg.meta_inner_lr, cfg.meta_weight)
