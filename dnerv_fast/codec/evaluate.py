"""Rate-distortion evaluation of a .dnerv file against its source videos and x264/x265."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from dnerv_fast.codec.anchors import encode_anchor
from dnerv_fast.codec.errors import CodecError
from dnerv_fast.codec.pipeline import Encoded, load, read_sources
from dnerv_fast.metrics import ms_ssim, psnr

METRIC_CHUNK = 16  # frames per metric call, to bound memory on large frames


@dataclass
class Row:
    """One rate-distortion point; ``video`` is a name or ``ALL`` (frame-weighted mean)."""

    method: str
    setting: str
    video: str
    frames: int
    bpp: float
    psnr: float
    ms_ssim: float


def frame_metrics(decoded: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame PSNR and MS-SSIM of uint8 [N, H, W, 3] frames."""
    ps, ms = [], []
    for i in range(0, len(reference), METRIC_CHUNK):
        a = torch.from_numpy(decoded[i:i + METRIC_CHUNK]).permute(0, 3, 1, 2).double() / 255
        b = torch.from_numpy(reference[i:i + METRIC_CHUNK]).permute(0, 3, 1, 2).double() / 255
        ps.append(psnr(a, b).numpy())
        ms.append(ms_ssim(a, b).numpy())
    return np.concatenate(ps), np.concatenate(ms)


def _row(method: str, setting: str, video: str, bits: float, pixels: int,
         ps: np.ndarray, ms: np.ndarray) -> Row:
    return Row(method, setting, video, len(ps), bits / pixels, float(np.mean(ps)), float(np.mean(ms)))


def _overall(per_frame: dict[str, tuple[np.ndarray, np.ndarray]],
             bits: float, pixels: int, method: str, setting: str) -> Row:
    ps = np.concatenate([p for p, _ in per_frame.values()])
    ms = np.concatenate([m for _, m in per_frame.values()])
    return _row(method, setting, "ALL", bits, pixels, ps, ms)


def _dnerv_setting(h: dict) -> str:
    return (f"{h['config'].get('name', 'custom')} {h['bits']}bit prune{h['prune']:g} "
            f"{h['keyframe_codec']}{h['keyframe_quality']}")


def evaluate(path: str | os.PathLike, sources: Sequence[str | os.PathLike],
             crfs: Sequence[int] = (23, 28, 33, 38), anchors: Sequence[str] = ("x264", "x265"),
             preset: str = "medium", progress: bool = True) -> list[Row]:
    """D-NeRV rows for each video and overall, then the same for each anchor and CRF.

    Sources are matched to the file's videos in order and must have the same frame size
    and at least as many frames (extra frames are ignored, as with ``--max-frames``).
    D-NeRV bits per video are its own keyframe bytes plus a pixel-proportional share of the
    shared bytes (weights, header); the ``ALL`` row uses the whole file size.
    """
    encoded: Encoded = load(path)
    refs = read_sources(sources)
    if len(refs) != len(encoded.videos):
        raise CodecError(f"the file holds {len(encoded.videos)} videos but {len(refs)} were given")
    frames = []
    for v, r in zip(encoded.videos, refs):
        if (r.height, r.width) != (v.height, v.width) or r.num_frames < v.length:
            raise CodecError(f"'{r.name}' is {r.width}x{r.height} with {r.num_frames} frames but "
                             f"the file's '{v.name}' is {v.width}x{v.height} with {v.length}")
        frames.append(r.frames[:v.length])
    pixels = [f[..., 0].size for f in frames]
    total = sum(pixels)
    key_bytes = [sum(len(b) for b in v.key_bytes) for v in encoded.videos]
    shared = encoded.file_bytes - sum(key_bytes)
    rows: list[Row] = []
    setting = _dnerv_setting(encoded.header)
    per_frame = {}
    for i, v in enumerate(tqdm(encoded.videos, desc="D-NeRV", disable=not progress)):
        per_frame[v.name] = frame_metrics(encoded.render(i), frames[i])
        bits = 8 * (key_bytes[i] + shared * pixels[i] / total)
        rows.append(_row("D-NeRV", setting, v.name, bits, pixels[i], *per_frame[v.name]))
    rows.append(_overall(per_frame, 8 * encoded.file_bytes, total, "D-NeRV", setting))
    jobs = [(a, c) for a in anchors for c in crfs]
    for anchor, crf in tqdm(jobs, desc="anchors", disable=not progress):
        per_frame, total_bytes = {}, 0
        for v, f in zip(encoded.videos, frames):
            result = encode_anchor(f, anchor, crf, v.fps, preset)
            per_frame[v.name] = frame_metrics(result.frames, f)
            total_bytes += result.bytes
            rows.append(_row(anchor, f"crf {crf} {preset} yuv444p", v.name, 8 * result.bytes,
                             f[..., 0].size, *per_frame[v.name]))
        rows.append(_overall(per_frame, 8 * total_bytes, total, anchor,
                             f"crf {crf} {preset} yuv444p"))
    return rows
