"""Dataset readers (one per format), the episodic sampler, feature datasets and synthetic data."""
from mmreason.registry import DATASETS

# name -> ("module:attr", help); entries are added as readers land.
_DATASETS: dict[str, tuple[str, str]] = {
    "ego4d_lta": ("mmreason.data.anticipation:read_ego4d_lta", "Ego4D long-term anticipation fho_lta_*.json"),
    "lta_verb_sets": ("mmreason.data.anticipation:read_lta_segments_json",
                      "EPIC-Kitchens-55 / EGTEA Gaze+ long-term anticipation (AntGPT-style JSON)"),
    "multilabel_tal": ("mmreason.data.multilabel:MultiLabelTAL",
                       "PDAN/MS-TCT/MLAD dense multi-label TAL (MultiTHUMOS, TSU, UCF-Crime-TAL)"),
    "synthetic_cooccurrence_tal": ("mmreason.data.multilabel:SyntheticCooccurrenceTAL",
                                   "synthetic dense TAL with built-in co-occurrence (tests)"),
    "vad_frames": ("mmreason.data.vad:list_frame_folder_videos",
                   "Avenue / ShanghaiTech / NWPU Campus frame folders with per-frame labels and scene ids"),
    "feature_bags": ("mmreason.data.feature_bags:read_feature_list",
                     "UCF-Crime (10-crop) / XD-Violence (5-crop) I3D feature bags"),
    "rulstm_features": ("mmreason.data.anticipation:RulstmFeatureDataset", "RULSTM CSV + LMDB/npy features"),
}

for _name, (_target, _help) in _DATASETS.items():
    DATASETS.register_lazy(_name, _target, help=_help)
