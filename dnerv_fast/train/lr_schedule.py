"""Learning-rate schedule of the paper: linear warm-up, then cosine decay to zero."""
from __future__ import annotations

import math


def learning_rate(progress: float, peak: float, warmup: float = 0.2) -> float:
    """Rate at ``progress`` in [0, 1] (fraction of all training iterations done).

    Warm-up rises linearly from 0.1 * peak to peak over the first ``warmup`` fraction,
    then a half cosine falls from peak to 0 at progress 1.
    """
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return peak * (0.1 + 0.9 * progress / warmup)
    span = 1.0 - warmup
    done = (progress - warmup) / span if span > 0 else 1.0
    return peak * 0.5 * (1.0 + math.cos(math.pi * done))
