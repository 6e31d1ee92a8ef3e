"""Open-MeDe: Learning to Generalize without Bias for Open-Vocabulary Action Recognition (Yu, Cao, Zhang, Zhang;
ICCV 2025; arXiv 2502.20158).

The paper's method sections and code were not available (specs/clip_action_recognition.md §4); everything
below except the ideas named in its abstract is a **reconstruction**, each choice a config field:

* cross-batch meta-optimisation (abstract; first-order with a virtual step, as the STDD repo's
  ``expand_FOMAML_virtual`` experiments suggest): :func:`~mmreason.methods.open_mede.meta.first_order_cross_batch`
  inside :meth:`OpenMeDeModel.loss`. **Batch layout**: the engine owns the loop and hands ``loss`` one batch,
  which is split into a virtual-train sub-batch ``B_i`` and a virtual-evaluation sub-batch ``B_(i+1)`` with
  disjoint classes (``model.meta_pairing``; :func:`~mmreason.methods.open_mede.meta.class_disjoint_split`), so
  the virtual evaluation is on other classes (known-to-open). No engine hook is needed. Fields:
  ``model.meta_inner_step`` / ``model.meta_inner_lr`` (the virtual step; ``relative`` moves every tensor by the
  fraction α of its RMS, because an SGD step at the base lr is ~1e-6 of the weights and changes nothing),
  ``model.meta_weight`` (λ); the outer step β is ``train.lr``.
* static debiasing inside the cross-batch scheme (STDD repo keys ``CROSS_BATCH_META_DEBIAS`` /
  ``CROSS_BATCH_META_MIX``, Beta(20, 20)): :func:`~mmreason.methods.open_mede.meta.static_mix` blends a video
  with a static clip (one frame repeated) of another video of its sub-batch (``model.debias_prob``), and the
  virtual-evaluation videos with static clips of the virtual-train sub-batch, i.e. with other classes' static
  cues (``model.mix_prob``): the virtual evaluation is out of context. ``meta_weight = 0`` is plain training:
  cross-entropy on the batch, no virtual step and no mixes.
* no CLIP regularisation (abstract): no frozen teacher, no distillation (``distill_weight`` must be 0).
* self-ensemble over the optimisation trajectory (abstract; ``gwa_0_22`` in the STDD repo): Gaussian weight
  averaging of the epoch checkpoints with the initial CLIP as checkpoint 0 (``average`` section;
  :func:`mmreason.methods.open_mede.self_ensemble`).

The video learner is STDD's CLIP video model (:class:`~mmreason.methods.stdd.model.ZeroShotVideoCLIP`; by default
with Space-time Cross Attention — Open-VCLIP's ``expand_temporal_view`` is not implemented) with a trained logit
scale, scored against a fixed text classifier (Open-VCLIP's 28 templates, per-frame logits averaged).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mmreason.methods.open_mede.meta import class_disjoint_split, first_order_cross_batch, static_mix
from mmreason.methods.stdd.model import ZeroShotVideoCLIP, check_trainable


class OpenMeDeModel(ZeroShotVideoCLIP):
    """CLIP video learner whose ``loss`` runs one first-order cross-batch meta step on two sub-batches of the batch."""

    def __init__(self, cfg, train_prompts, towers):
        if cfg.distill_weight != 0:
            raise ValueError("Open-MeDe uses no CLIP regularisation: model.distill_weight must be 0")
        super().__init__(cfg, train_prompts, towers)

    def classification_loss(self, sub_batch) -> "torch.Tensor":  # noqa: F821
        frames, labels = sub_batch
        return F.cross_entropy(self.forward(frames), labels)

    def meta_split(self, labels):
        """Indices of the virtual-train and virtual-evaluation sub-batches (``model.meta_pairing``), or ``None``
        when the batch cannot be split (one video, or one class under ``class_disjoint``)."""
        if len(labels) < 2:
            return None
        if self.cfg.meta_pairing == "class_disjoint":
            return class_disjoint_split(labels.cpu())
        half = len(labels) // 2
        return torch.arange(half), torch.arange(half, len(labels))

    def loss(self, batch: dict) -> dict:
        frames, labels = batch["frames"], batch["labels"]  # [B, T, 3, H, W], [B]
        check_trainable(self)
        cfg = self.cfg
        split = self.meta_split(labels) if cfg.meta_weight != 0 else None
        if split is None:  # plain training: meta step off (or a batch that cannot be split), no static mixes
            ce = F.cross_entropy(self.forward(frames), labels)
            return {"loss": ce, "ce": ce.detach()}
        a, b = (i.to(labels.device) for i in split)
        frames_a, frames_b = frames[a], frames[b]  # B_i (virtual train), B_(i+1) (virtual evaluation)
        mixed_a = static_mix(frames_a, frames_a, cfg.debias_prob, cfg.mix_beta, exclude_self=True)
        mixed_b = static_mix(frames_b, frames_b, cfg.debias_prob, cfg.mix_beta, exclude_self=True)
        # the virtual evaluation also sees its videos under the virtual-train batch's static cues (other classes)
        mixed_b = static_mix(mixed_b, frames_a, cfg.mix_prob, cfg.mix_beta)
        params = [p for p in self.parameters() if p.requires_grad]
        return first_order_cross_batch(params, self.classification_loss, (mixed_a, labels[a]),
                                       (mixed_b, labels[b]), cfg.meta_inner_lr, cfg.meta_weight,
                                       cfg.meta_inner_step)
