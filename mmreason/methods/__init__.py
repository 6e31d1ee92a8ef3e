"""One folder per paper. Each is registered lazily so ``mmreason ls methods`` imports nothing heavy."""
from mmreason.registry import METHODS

# name -> "module:METHOD" (a MethodSpec); a method appears here once its folder exists.
_METHODS: dict[str, tuple[str, str]] = {
    "adsm": ("mmreason.methods.adsm:METHOD",
             "ADSM (arXiv 2506.23282): autoregressive denoising score matching video anomaly detector"),
    "cbcg": ("mmreason.methods.cbcg:METHOD",
             "CBCG (arXiv 2212.08506): weakly supervised VAD with cross-batch clustering guidance"),
    "corm": ("mmreason.methods.corm:METHOD",
             "CORM (arXiv 2303.08463): co-occurrence relation module for multi-label TAL on PDAN / MS-TCT"),
    "fbae": ("mmreason.methods.fbae:METHOD",
             "NWPU Campus model (arXiv 2305.13611): scene-conditioned forward-backward VAD and anticipation"),
    "icvl": ("mmreason.methods.icvl:METHOD",
             "ICVL (arXiv 2505.01713): intention-enhanced visual tokens + LLM long-term action anticipation"),
    "stdd": ("mmreason.methods.stdd:METHOD",
             "STDD (arXiv 2412.09895): zero-shot recognition, space-time cross attention + knowledge-graph prompts"),
    "open_mede": ("mmreason.methods.open_mede:METHOD",
                  "Open-MeDe (arXiv 2502.20158): open-vocabulary recognition, cross-batch meta-optimisation"),
    "task_adapter": ("mmreason.methods.task_adapter:METHOD",
                     "Task-Adapter (arXiv 2408.00249): few-shot action recognition, task attention adapters"),
    "task_adapter_pp": ("mmreason.methods.task_adapter_pp:METHOD",
                        "Task-Adapter++ (arXiv 2505.06002): few-shot recognition with LLM sub-action order adapters"),
    "vs_transgru": ("mmreason.methods.vs_transgru:METHOD",
                    "VS-TransGRU (arXiv 2307.03918): Transformer-GRU egocentric action anticipation"),
}

for _name, (_target, _help) in _METHODS.items():
    METHODS.register_lazy(_name, _target, help=_help)
