"""Generated test videos: smooth moving patterns a small model can learn in a few epochs.

Used by ``dnerv-fast demo`` (so a new machine needs no video file) and by the tests.
"""
from __future__ import annotations

import numpy as np

from dnerv_fast.media.video_io import Video


def moving_pattern(frames: int = 9, height: int = 64, width: int = 64, fps: float = 25.0,
                   name: str = "synthetic") -> Video:
    """Three sinusoidal colour fields drifting in different directions, plus a moving disc."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    radius = max(3.0, min(height, width) / 8)
    for t in range(frames):
        field = np.stack([128 + 100 * np.sin((x + 3 * t) / 9),
                          128 + 100 * np.cos((y - 2 * t) / 11),
                          128 + 60 * np.sin((x + y + t) / 13)], -1)
        cx = (0.2 + 0.6 * (t / max(frames - 1, 1))) * width
        cy = height / 2 + height / 4 * np.sin(t / 6)
        disc = (x - cx) ** 2 + (y - cy) ** 2 < radius ** 2
        field[disc] = (240, 200, 40)
        out[t] = field.round().clip(0, 255).astype(np.uint8)
    return Video(name, out, fps)
