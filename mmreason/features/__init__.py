"""Visual features for your own videos: frame encoders named by one spec string, and the extraction job that writes
exactly the feature files the anticipation loaders read (ICVL per action, RULSTM-style per frame).

    >>> from mmreason.features import extract_features, load_encoder                       # doctest: +SKIP
    >>> enc = load_encoder("openclip:ViT-L-14-quickgelu:openai")     # frames uint8 [T, H, W, 3] -> [T, 768]
    >>> extract_features("ego4d_lta", ["fho_lta_train.json"], "feats/", enc.spec, videos="v2/clips/")

CLI: ``mmreason extract --encoder ... --dataset ego4d_lta|rulstm --annotations ... --videos DIR --output DIR``.
"""
from mmreason.features.encoders import (EncoderError, FrameEncoder, OpenClipEncoder, PixelFrameEncoder,
                                        RandomWeightsWarning, load_encoder, parse_encoder_spec)
from mmreason.features.extract import (DATASETS, ExtractionInputError, check_features_encoder, extract_features,
                                       read_manifest)

__all__ = ["DATASETS", "EncoderError", "ExtractionInputError", "FrameEncoder", "OpenClipEncoder",
           "PixelFrameEncoder", "RandomWeightsWarning", "check_features_encoder", "extract_features", "load_encoder",
           "parse_encoder_spec", "read_manifest"]
