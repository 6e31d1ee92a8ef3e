"""Task-Adapter experiment config. Defaults are the released (Task-Adapter++) code's; see the README."""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.data.fewshot import FewShotDataConfig
from mmreason.engine.config import TrainConfig


@dataclass
class TaskAdapterConfig:
    """Frozen CLIP ViT with Task-Adapters in its last layers (arXiv 2408.00249)."""

    clip_model: str = option("ViT-B-16-quickgelu", help="open_clip model config (mmr-tiny-32/64 for tests)")
    pretrained: str = option("", help="open_clip pretrained tag, e.g. openai; empty = none")
    checkpoint: str = option("", help="local OpenAI CLIP checkpoint (ViT-B-16.pt JIT archive or state dict)")
    checkpoint_activation: str = option("auto", help="activation the checkpoint was trained with (auto: read from "
                                        "a JIT archive, else QuickGELU)", choices=("auto", "quick_gelu", "gelu"))
    image_size: int = option(0, help="CLIP input resolution; 0 = the open_clip config's (224 for ViT-B-16); must "
                             "equal data.image_size")
    num_frames: int = option(8, help="frames per video T (size of the temporal embedding)")
    adapter: str = option("task", help="task: the paper's Task-Adapters; lora: PEFT LoRA on the last layers "
                          "(an alternative, not the paper's)", choices=("task", "lora"))
    adapter_layers: int = option(2, help="adapted last layers M (released code: 6 for SSv2, 2 otherwise)")
    adapter_ratio: float = option(0.25, help="adapter bottleneck width / model width (768 -> 192)")
    zero_init_task_adapter: bool = option(False, help="zero-init the task adapter's fc2 (released code: no; the "
                                          "t/s/MLP adapters are always zero-initialised)")
    task_attention_scope: str = option("separate", help="separate: support and query pass the backbone in two "
                                       "calls (released code); joint: one call over the whole episode "
                                       "[reconstruction choice]", choices=("separate", "joint"))
    task_attention_chunks: int = option(1, help="task attention only among the videos of each of this many "
                                        "contiguous chunks of a support/query call (torch.chunk); the released "
                                        "protocol wraps the backbone in nn.DataParallel over config.yaml's "
                                        "num_gpus (3), which does exactly this; 1 = paper (all videos of a call)")
    logit_scale: float = option(64.0, help="temperature on cosine scores in the cross-entropy [reconstruction: "
                                "Task-Adapter's loss code is unreleased; 64 is Task-Adapter++'s]")
    lora_rank: int = option(8, help="LoRA rank (adapter=lora)")
    lora_alpha: float = option(16.0, help="LoRA alpha (adapter=lora)")
    lora_dropout: float = option(0.0, help="LoRA dropout (adapter=lora)")
    lora_targets: list[str] = option(default_factory=lambda: ["attn.out_proj", "mlp.c_fc", "mlp.c_proj"],
                                     help="block modules that get LoRA (adapter=lora)")


def paper_train() -> TrainConfig:
    """Released-code protocol: SGD lr 1e-3 without momentum, constant lr (the MultiStepLR is never stepped),
    one episode per step, 1000 episodes per epoch, 10 epochs, seed 916."""
    return TrainConfig(optimizer="sgd", lr=1e-3, momentum=0.0, lr_schedule="constant", batch_size=1, epochs=10,
                       steps_per_epoch=1000, seed=916, log_every=50)


@dataclass
class TaskAdapterExperiment:
    """Task-Adapter few-shot action recognition experiment."""

    model: TaskAdapterConfig = option(default_factory=TaskAdapterConfig, help="the network")
    data: FewShotDataConfig = option(default_factory=FewShotDataConfig, help="few-shot episodes")
    train: TrainConfig = option(default_factory=paper_train, help="optimiser and schedule")
