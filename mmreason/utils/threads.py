"""Temporarily change torch's intra-op thread count (restored on exit).

Tiny models run fastest on one thread: on a busy 2-core machine two threads were 10-20x slower in our tests.
"""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
