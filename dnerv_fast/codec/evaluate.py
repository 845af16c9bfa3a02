"""Rate-distortion evaluation of a .dnerv file against its source videos and x264/x265.

For inpainting, rows with method ``holes`` and ``visible`` give the PSNR of the decoded video
against the original inside the masks and outside them (per frame over the region's pixels,
averaged over the frames that have such pixels; MS-SSIM is not defined on a region: NaN,
and no variant).

Every row names the MS-SSIM variant its frames got (:func:`dnerv_fast.metrics.ms_ssim_variant`:
frames under 161 px a side are mirrored up to that size first); an ``ALL`` row over videos of
both kinds joins the names with ``+``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from dnerv_fast.codec.anchors import encode_anchor
from dnerv_fast.errors import CodecError
from dnerv_fast.codec.pipeline import Encoded, load, read_sources
from dnerv_fast.metrics import ms_ssim, ms_ssim_variant, psnr
from dnerv_fast.train.masks import MaskSource, masks_from_header, video_holes
from dnerv_fast.media.video_io import Video

METRIC_CHUNK = 16  # frames per metric call, to bound memory on large frames
REGION_METHODS = ("holes", "visible")  # inpainting rows: PSNR inside / outside the masks
DNERV = "D-NeRV"  # the method name of the file's own rows


@dataclass
class Row:
    """One rate-distortion point; ``video`` is a name or ``ALL`` (frame-weighted mean);
    ``ms_ssim_variant`` is empty on the region rows, which have no MS-SSIM."""

    method: str
    setting: str
    video: str
    frames: int
    bpp: float
    psnr: float
    ms_ssim: float
    ms_ssim_variant: str


def frame_metrics(decoded: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame PSNR and MS-SSIM of uint8 [N, H, W, 3] frames."""
    ps, ms = [], []
    for i in range(0, len(reference), METRIC_CHUNK):
        a = torch.from_numpy(decoded[i:i + METRIC_CHUNK]).permute(0, 3, 1, 2).double() / 255
        b = torch.from_numpy(reference[i:i + METRIC_CHUNK]).permute(0, 3, 1, 2).double() / 255
        ps.append(psnr(a, b).numpy())
        ms.append(ms_ssim(a, b).numpy())
    return np.concatenate(ps), np.concatenate(ms)


def region_psnr(decoded: np.ndarray, reference: np.ndarray, region: np.ndarray) -> np.ndarray:
    """PSNR over the pixels of ``region`` (bool [N, H, W]) of each frame that has any."""
    out = []
    for i in range(0, len(reference), METRIC_CHUNK):
        a = torch.from_numpy(decoded[i:i + METRIC_CHUNK]).permute(0, 3, 1, 2).double() / 255
        b = torch.from_numpy(reference[i:i + METRIC_CHUNK]).permute(0, 3, 1, 2).double() / 255
        w = torch.from_numpy(region[i:i + METRIC_CHUNK]).unsqueeze(1)
        out.append(psnr(a, b, w)[w.flatten(1).any(1)].numpy())
    return np.concatenate(out)


def _mean(values: np.ndarray) -> float:
    """Mean, NaN when empty (a region no frame has)."""
    return float(np.mean(values)) if len(values) else float("nan")


def _row(method: str, setting: str, video: str, bits: float, pixels: int,
         ps: np.ndarray, ms: np.ndarray, variant: str) -> Row:
    return Row(method, setting, video, len(ps), bits / pixels, _mean(ps), _mean(ms), variant)


def join_variants(variants: Iterable[str]) -> str:
    """The MS-SSIM variant of values pooled over frames of these variants."""
    return "+".join(sorted(set(variants)))


def _overall(per_frame: dict[str, tuple[np.ndarray, np.ndarray]],
             bits: float, pixels: int, method: str, setting: str, variant: str) -> Row:
    ps = np.concatenate([p for p, _ in per_frame.values()])
    ms = np.concatenate([m for _, m in per_frame.values()])
    return _row(method, setting, "ALL", bits, pixels, ps, ms, variant)


def _region_rows(regions: dict[str, tuple[np.ndarray, np.ndarray]], bits: list[float],
                 pixels: list[int], file_bits: float, setting: str) -> list[Row]:
    """``holes`` and ``visible`` rows per video and overall, from per-frame region PSNRs."""
    rows = []
    for side, method in enumerate(REGION_METHODS):
        per_frame = {}
        for (name, both), b, n in zip(regions.items(), bits, pixels):
            ps = both[side]
            per_frame[name] = (ps, np.full(len(ps), np.nan))
            rows.append(_row(method, setting, name, b, n, *per_frame[name], ""))
        rows.append(_overall(per_frame, file_bits, sum(pixels), method, setting, ""))
    return rows


def _dnerv_setting(h: dict) -> str:
    return (f"{h['config'].get('name', 'custom')} {h['bits']}bit prune{h['prune']:g} "
            f"{h['keyframe_codec']}-q{h['keyframe_quality']}")


def evaluate(path: str | os.PathLike, sources: Sequence[str | os.PathLike],
             crfs: Sequence[int] = (23, 28, 33, 38), anchors: Sequence[str] = ("x264", "x265"),
             preset: str = "medium", progress: bool = True,
             masks: MaskSource | None = None,
             pix_fmts: Sequence[str] = ("yuv444p",),
             max_memory: int | str | None = None) -> list[Row]:
    """D-NeRV rows for each video and overall, then the same for each anchor, CRF and
    anchor pixel format (``pix_fmts``: yuv444p, yuv420p).

    With ``masks``, or when the file stores the box masks it was trained with, ``holes`` and
    ``visible`` rows follow the D-NeRV rows (see the module docstring).

    Sources are matched to the file's videos in order and must have the same frame size
    and at least as many frames (extra frames are ignored, as with ``--max-frames``).
    D-NeRV bits per video are its own keyframe bytes plus a pixel-proportional share of the
    shared bytes (weights, header); the ``ALL`` row uses the whole file size.
    ``max_memory`` overrides the memory budget of decoding (:mod:`.memory`).
    """
    encoded: Encoded = load(path, max_memory=max_memory)
    masks = masks or masks_from_header(encoded.header)
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
    variants = {v.name: ms_ssim_variant(v.height, v.width) for v in encoded.videos}
    all_variant = join_variants(variants.values())
    holes = None if masks is None else video_holes(
        masks, [Video(r.name, f, r.fps) for r, f in zip(refs, frames)])
    per_frame, regions, bits = {}, {}, []
    for i, v in enumerate(tqdm(encoded.videos, desc="D-NeRV", disable=not progress)):
        decoded = encoded.render(i)
        per_frame[v.name] = frame_metrics(decoded, frames[i])
        if holes is not None:
            regions[v.name] = (region_psnr(decoded, frames[i], holes[i]),
                               region_psnr(decoded, frames[i], ~holes[i]))
        bits.append(8 * (key_bytes[i] + shared * pixels[i] / total))
        rows.append(_row(DNERV, setting, v.name, bits[i], pixels[i], *per_frame[v.name],
                         variants[v.name]))
    rows.append(_overall(per_frame, 8 * encoded.file_bytes, total, DNERV, setting, all_variant))
    if holes is not None:
        rows += _region_rows(regions, bits, pixels, 8 * encoded.file_bytes, setting)
    jobs = [(a, c, p) for a in anchors for p in pix_fmts for c in crfs]
    for anchor, crf, pix_fmt in tqdm(jobs, desc="anchors", disable=not progress):
        per_frame, total_bytes = {}, 0
        anchor_setting = f"crf {crf} {preset} {pix_fmt}"
        method = anchor if pix_fmt == "yuv444p" else f"{anchor}-420"   # one curve each
        for v, f in zip(encoded.videos, frames):
            result = encode_anchor(f, anchor, crf, v.fps, preset, pix_fmt)
            per_frame[v.name] = frame_metrics(result.frames, f)
            total_bytes += result.bytes
            rows.append(_row(method, anchor_setting, v.name, 8 * result.bytes,
                             f[..., 0].size, *per_frame[v.name], variants[v.name]))
        rows.append(_overall(per_frame, 8 * total_bytes, total, method, anchor_setting,
                             all_variant))
    return rows
