#!/usr/bin/env python
"""Alias of ``mmreason generate``: the same engine, flags, checks, errors and exit status.

    python scripts/generate_assets.py subactions action_graph label_semantics --dataset hmdb51 ucf101 \
        --backend vllm --model Qwen/Qwen2.5-7B-Instruct --prompt-style chat

is ``mmreason generate subactions action_graph label_semantics --dataset hmdb51 ucf101 ...``: every
(asset, dataset) pair is checked before the model loads, the model loads once (and only if an answer is not
cached yet), and the exit status is 1 while any item has no curated record (``--allow-failures``: 0).
``mmreason generate --help`` lists the flags.
"""
from __future__ import annotations

import sys

from mmreason.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
