"""Rate-distortion evaluation of a .dnerv file against its source videos and x264/x265.

For inpainting, rows with method ``holes`` and ``visible`` give the PSNR of the decoded video
against the original inside the masks and outside them (per frame over the region's pixels,
averaged over the frames that have such pixels; MS-SSIM is not defined on a region: NaN,
and no variant).

Every row names the MS-SSIM variant its frames got (:func:`dnerv_fast.metrics.ms_ssim_variant`:
frames under 161 px a side are mirrored up to that size first); an ``ALL`` row over videos of
both kinds joins the names with ``+``, and so does its ``colour`` (see :class:`Row`).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from dnerv_fast.progress import progress_bar

from dnerv_fast.codec.anchors import encode_anchor, encode_anchor_planes
from dnerv_fast.errors import CodecError
from dnerv_fast.codec.pipeline import Encoded, load, read_sources
from dnerv_fast.metrics import ms_ssim, ms_ssim_variant, psnr, yuv_psnr
from dnerv_fast.media.output import YuvTarget
from dnerv_fast.media.planar import PlanarSource, SourceOptions, to_rgb8
from dnerv_fast.media.yuv import YuvFormat, rgb_to_yuv, yuv_to_rgb
from dnerv_fast.train.masks import MaskSource, masks_from_header, video_holes
from dnerv_fast.media.video_io import Video

METRIC_CHUNK = 16  # frames per metric call, to bound memory on large frames
REGION_METHODS = ("holes", "visible")  # inpainting rows: PSNR inside / outside the masks
DNERV = "D-NeRV"  # the method name of the file's own rows


# Per-frame figures of a row, each averaged over frames: ``psnr`` is PSNR-RGB, the rest
# PSNR on YUV planes (dnerv_fast.metrics.yuv_psnr; the JSON names use dashes).
METRICS = ("psnr", "ms_ssim", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_yuv_mse411",
           "psnr_yuv_611")
Metrics = dict[str, np.ndarray]
RGB_YUV = YuvFormat("444", 8)   # how an RGB source's YUV figures are made (BT.709, full)


@dataclass
class Row:
    """One rate-distortion point; ``video`` is a name or ``ALL`` (frame-weighted mean);
    ``ms_ssim_variant`` is empty on the region rows, which have no MS-SSIM.

    ``psnr`` is PSNR-RGB; ``psnr_y`` ... ``psnr_yuv_611`` are on YUV planes (``psnr_yuv``:
    CompressAI's (4 Y + U + V) / 6; ``psnr_yuv_mse411``: Cool-chic's MSE 4:1:1;
    ``psnr_yuv_611``: DCVC's (6 Y + U + V) / 8). ``colour`` names where both come from:
    ``yuv420p10le bt709 full`` for a YUV source (YUV figures on its own planes at its peak,
    PSNR-RGB and MS-SSIM on both sides converted by that matrix and range), ``rgb bt709
    full`` for an RGB source (PSNR-RGB on its 8-bit RGB; YUV figures on BT.709 full-range
    4:4:4 of both sides, unrounded, peak 255).
    """

    method: str
    setting: str
    video: str
    frames: int
    bpp: float
    psnr: float
    ms_ssim: float
    ms_ssim_variant: str
    psnr_y: float = float("nan")
    psnr_u: float = float("nan")
    psnr_v: float = float("nan")
    psnr_yuv: float = float("nan")
    psnr_yuv_mse411: float = float("nan")
    psnr_yuv_611: float = float("nan")
    colour: str = ""


def frame_metrics(decoded: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame PSNR and MS-SSIM of uint8 [N, H, W, 3] frames."""
    ps, ms = [], []
    for i in range(0, len(reference), METRIC_CHUNK):
        a = torch.from_numpy(decoded[i:i + METRIC_CHUNK]).permute(0, 3, 1, 2).double() / 255
        b = torch.from_numpy(reference[i:i + METRIC_CHUNK]).permute(0, 3, 1, 2).double() / 255
        ps.append(psnr(a, b).numpy())
        ms.append(ms_ssim(a, b).numpy())
    return np.concatenate(ps), np.concatenate(ms)


def _yuv_columns(values: list[dict[str, float]]) -> Metrics:
    return {k.replace("-", "_"): np.array([v[k] for v in values]) for k in values[0]} \
        if values else {k: np.zeros(0) for k in METRICS[2:]}


def rgb_metrics(decoded: np.ndarray, reference: np.ndarray) -> Metrics:
    """Every figure of :data:`METRICS` per frame of uint8 RGB [N, H, W, 3] frames."""
    ps, ms = frame_metrics(decoded, reference)
    yuv = [yuv_psnr(rgb_to_yuv(d / 255, RGB_YUV, quantise=False),
                    rgb_to_yuv(r / 255, RGB_YUV, quantise=False), 255)
           for d, r in zip(decoded, reference)]
    return {"psnr": ps, "ms_ssim": ms, **_yuv_columns(yuv)}


def planar_metrics(decoded: Iterable[list[np.ndarray]], source: PlanarSource,
                   start: int = 0) -> Metrics:
    """Every figure of :data:`METRICS` per frame of decoded planes against the source's
    frames from ``start`` on: YUV figures on the planes themselves (peak 2^bits - 1),
    PSNR-RGB and MS-SSIM on both converted to RGB by the source's matrix and range."""
    fmt = source.format
    yuv, ps, ms = [], [], []
    for i, planes in enumerate(decoded, start):
        ref = source.planes(i)
        yuv.append(yuv_psnr(planes, ref, fmt.peak))
        a = torch.from_numpy(yuv_to_rgb(planes, fmt, source.matrix, source.range))
        b = torch.from_numpy(source.rgb(i))
        a, b = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
        ps.append(float(psnr(a, b)[0]))
        ms.append(float(ms_ssim(a, b)[0]))
    return {"psnr": np.array(ps), "ms_ssim": np.array(ms), **_yuv_columns(yuv)}


def colour_label(source: PlanarSource | None) -> str:
    if source is None:
        return "rgb bt709 full"
    return f"{source.format.pix_fmt} {source.matrix} {source.range}"


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


def _row(method: str, setting: str, video: str, bits: float, pixels: int, m: Metrics,
         variant: str, colour: str) -> Row:
    means = {k: _mean(m[k]) if k in m else float("nan") for k in METRICS}
    return Row(method, setting, video, len(m["psnr"]), bits / pixels,
               ms_ssim_variant=variant, colour=colour, **means)


def join_variants(variants: Iterable[str]) -> str:
    """The MS-SSIM variant of values pooled over frames of these variants."""
    return "+".join(sorted(set(variants)))


def _overall(per_frame: dict[str, Metrics], bits: float, pixels: int, method: str,
             setting: str, variant: str, colour: str) -> Row:
    keys = set.intersection(*(set(m) for m in per_frame.values()))
    joined = {k: np.concatenate([m[k] for m in per_frame.values()]) for k in keys}
    return _row(method, setting, "ALL", bits, pixels, joined, variant, colour)


def _region_rows(regions: dict[str, tuple[np.ndarray, np.ndarray]], bits: list[float],
                 pixels: list[int], file_bits: float, setting: str) -> list[Row]:
    """``holes`` and ``visible`` rows per video and overall, from per-frame region PSNRs
    (8-bit RGB; no YUV figures)."""
    rows = []
    for side, method in enumerate(REGION_METHODS):
        per_frame = {}
        for (name, both), b, n in zip(regions.items(), bits, pixels):
            ps = both[side]
            per_frame[name] = {"psnr": ps, "ms_ssim": np.full(len(ps), np.nan)}
            rows.append(_row(method, setting, name, b, n, per_frame[name], "", "rgb"))
        rows.append(_overall(per_frame, file_bits, sum(pixels), method, setting, "", "rgb"))
    return rows


def _dnerv_setting(h: dict) -> str:
    return (f"{h['config'].get('name', 'custom')} {h['bits']}bit prune{h['prune']:g} "
            f"{h['keyframe_codec']}-q{h['keyframe_quality']}")


def _check_source(entry: dict, ref: Video) -> None:
    """A YUV reference must have the layout the file was encoded from."""
    declared = YuvTarget.of(entry) if entry.get("chroma", "rgb") != "rgb" else None
    if ref.source is None or declared is None:
        return
    if declared.format != ref.source.format:
        raise CodecError(f"the file's '{entry['name']}' was encoded from a "
                         f"{declared.format.pix_fmt} source but '{ref.source.path}' is "
                         f"{ref.source.format.pix_fmt}")


def _dnerv_metrics(encoded: Encoded, index: int, ref: Video, frames: np.ndarray,
                   hole: np.ndarray | None) -> tuple[Metrics, tuple | None]:
    """Per-frame figures of video ``index`` decoded a group of clips at a time (a YUV
    source's as the .yuv decode writes it), and its region PSNRs when it has holes."""
    v = encoded.videos[index]
    target = YuvTarget.of(encoded.header["videos"][index])
    parts, inside, outside, pos = [], [], [], 0
    for group in encoded.stream(index, 0, v.length, 16 if ref.source else 8):
        n = len(group)
        if ref.source is not None:
            planes = [YuvTarget(ref.source.format, ref.source.matrix, ref.source.range,
                                target.siting).planes(f) for f in group]
            parts.append(planar_metrics(planes, ref.source, pos))
            group = to_rgb8(group)
        else:
            parts.append(rgb_metrics(group, frames[pos:pos + n]))
        if hole is not None:
            ref8 = to_rgb8(frames[pos:pos + n])
            inside.append(region_psnr(group, ref8, hole[pos:pos + n]))
            outside.append(region_psnr(group, ref8, ~hole[pos:pos + n]))
        pos += n
    joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return joined, None if hole is None else (np.concatenate(inside), np.concatenate(outside))


def _anchor_metrics(ref: Video, frames: np.ndarray, anchor: str, crf: int, fps: float,
                    preset: str, pix_fmt: str) -> tuple[Metrics, int]:
    """An anchor's per-frame figures and bytes: a YUV source coded in its own layout, an
    RGB source in ``pix_fmt``."""
    if ref.source is None:
        result = encode_anchor(frames, anchor, crf, fps, preset, pix_fmt)
        return rgb_metrics(result.frames, frames), result.bytes
    planes = [ref.source.planes(i) for i in range(len(frames))]
    coded = encode_anchor_planes(planes, ref.source.format, anchor, crf, fps, preset)
    return planar_metrics(coded.planes, ref.source), coded.bytes


def evaluate(path: str | os.PathLike, sources: Sequence[str | os.PathLike],
             crfs: Sequence[int] = (23, 28, 33, 38), anchors: Sequence[str] = ("x264", "x265"),
             preset: str = "medium", progress: bool = True,
             masks: MaskSource | None = None,
             pix_fmts: Sequence[str] = ("yuv444p",),
             source: SourceOptions | None = None,
             max_memory: int | str | None = None) -> list[Row]:
    """D-NeRV rows for each video and overall, then the same for each anchor, CRF and
    anchor pixel format (``pix_fmts``: yuv444p, yuv420p; a YUV source is always coded in
    its own layout, e.g. yuv420p10le, and named by it).

    Every row carries PSNR-RGB, MS-SSIM and the YUV figures (:class:`Row`): for a YUV
    source (raw .yuv or .y4m, read and cropped by ``source`` as at encoding) measured
    against its original planes, the decoded side being what ``decode`` writes as .yuv.

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
    refs = read_sources(sources, source=source)
    if len(refs) != len(encoded.videos):
        raise CodecError(f"the file holds {len(encoded.videos)} videos but {len(refs)} were given")
    frames = []
    for v, r, entry in zip(encoded.videos, refs, encoded.header["videos"]):
        if (r.height, r.width) != (v.height, v.width) or r.num_frames < v.length:
            raise CodecError(f"'{r.name}' is {r.width}x{r.height} with {r.num_frames} frames but "
                             f"the file's '{v.name}' is {v.width}x{v.height} with {v.length}")
        _check_source(entry, r)
        frames.append(r.frames[:v.length])
    pixels = [f[..., 0].size for f in frames]
    total = sum(pixels)
    key_bytes = [sum(len(b) for b in v.key_bytes) for v in encoded.videos]
    shared = encoded.file_bytes - sum(key_bytes)
    rows: list[Row] = []
    setting = _dnerv_setting(encoded.header)
    variants = {v.name: ms_ssim_variant(v.height, v.width) for v in encoded.videos}
    all_variant = join_variants(variants.values())
    colours = [colour_label(r.source) for r in refs]
    all_colour = join_variants(colours)
    holes = None if masks is None else video_holes(
        masks, [dataclasses.replace(r, frames=f) for r, f in zip(refs, frames)])
    per_frame, regions, bits = {}, {}, []
    for i, v in enumerate(progress_bar(encoded.videos, desc="D-NeRV", disable=not progress)):
        per_frame[v.name], region = _dnerv_metrics(encoded, i, refs[i], frames[i],
                                                   None if holes is None else holes[i])
        if region is not None:
            regions[v.name] = region
        bits.append(8 * (key_bytes[i] + shared * pixels[i] / total))
        rows.append(_row(DNERV, setting, v.name, bits[i], pixels[i], per_frame[v.name],
                         variants[v.name], colours[i]))
    rows.append(_overall(per_frame, 8 * encoded.file_bytes, total, DNERV, setting, all_variant,
                         all_colour))
    if holes is not None:
        rows += _region_rows(regions, bits, pixels, 8 * encoded.file_bytes, setting)
    planar = all(r.source is not None for r in refs)
    own = join_variants(r.source.format.pix_fmt for r in refs if r.source is not None)
    jobs = [(a, c, p) for a in anchors for p in ([own] if planar else pix_fmts) for c in crfs]
    for anchor, crf, pix_fmt in progress_bar(jobs, desc="anchors", disable=not progress):
        per_frame, total_bytes = {}, 0
        anchor_setting = f"crf {crf} {preset} {pix_fmt}"
        method = anchor if pix_fmt in ("yuv444p", own) else f"{anchor}-420"   # one curve each
        for v, r, f, colour in zip(encoded.videos, refs, frames, colours):
            per_frame[v.name], n = _anchor_metrics(r, f, anchor, crf, v.fps, preset, pix_fmt)
            total_bytes += n
            rows.append(_row(method, anchor_setting, v.name, 8 * n, f[..., 0].size,
                             per_frame[v.name], variants[v.name], colour))
        rows.append(_overall(per_frame, 8 * total_bytes, total, method, anchor_setting,
                             all_variant, all_colour))
    return rows
