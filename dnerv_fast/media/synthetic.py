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


def bouncing_squares(frames: int = 9, height: int = 64, width: int = 64, fps: float = 25.0,
                     name: str = "squares") -> Video:
    """Three flat-coloured squares bouncing off the borders of a dark gradient: sharp edges
    and occlusions, content an intra codec codes cheaply and motion it must code per frame."""
    y, x = np.mgrid[0:height, 0:width]
    background = np.stack([20 + 40 * y / height, 20 + 30 * x / width,
                           np.full((height, width), 50.0)], -1)
    side = max(2, min(height, width) // 5)
    squares = [((0.1, 0.2), (2.0, 1.3), (230, 60, 60)), ((0.6, 0.5), (-1.4, 2.2), (60, 220, 90)),
               ((0.3, 0.7), (1.1, -1.7), (70, 110, 240))]
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        field = background.copy()
        for (fy, fx), (vy, vx), colour in squares:
            top = _bounce(fy * (height - side) + vy * t, height - side)
            left = _bounce(fx * (width - side) + vx * t, width - side)
            field[top:top + side, left:left + side] = colour
        out[t] = field.round().clip(0, 255).astype(np.uint8)
    return Video(name, out, fps)


def panning_texture(frames: int = 9, height: int = 64, width: int = 64, fps: float = 25.0,
                    name: str = "pan") -> Video:
    """A fixed detailed texture (a seeded sum of sinusoids) seen by a camera panning right
    and slightly down: the whole frame moves, as in a camera pan."""
    rng = np.random.default_rng(13)
    waves = [(rng.uniform(0.05, 0.6), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi),
              rng.uniform(20, 45, 3)) for _ in range(12)]
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        u, v = x + 1.5 * t, y + 0.5 * t
        field = np.full((height, width, 3), 128.0)
        for freq, angle, phase, amp in waves:
            arg = freq * (u * np.cos(angle) + v * np.sin(angle)) + phase
            field += np.sin(arg)[..., None] * amp / 3
        out[t] = field.round().clip(0, 255).astype(np.uint8)
    return Video(name, out, fps)


def _bounce(position: float, span: int) -> int:
    """``position`` folded back into 0..span, as a ball bouncing between two walls."""
    if span <= 0:
        return 0
    p = position % (2 * span)
    return int(round(2 * span - p if p > span else p))
