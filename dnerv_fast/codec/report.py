"""Present evaluation rows: a text table, a CSV file, a rate-distortion plot and JSON files
in CompressAI's results shape."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Sequence

from dnerv_fast.atomic import (atomic_dir, atomic_path, check_folder_output, check_output,
                               write_bytes_atomic)
from dnerv_fast.codec.evaluate import METRICS, REGION_METHODS, Row, join_variants
from dnerv_fast.metrics import MS_SSIM_MIN_SIDE, MS_SSIM_PADDED

COLUMNS = [f.name for f in dataclasses.fields(Row)]
# CSV headers: the Row field names, PSNR-RGB named as such.
YUV_FIELDS = METRICS[2:]
CSV_HEADERS = ["psnr_rgb" if c == "psnr" else c for c in COLUMNS]
YUV_NOTE = ("PSNR-RGB: RGB, or a YUV source's planes converted by its matrix/range (colour); "
            "PSNR-YUV: (4 Y + U + V) / 6 as CompressAI; the CSV and JSON also give Cool-chic's "
            "(MSE 4:1:1) and DCVC's ((6 Y + U + V) / 8)")
PADDED_NOTE = (f"{MS_SSIM_PADDED}: frames under {MS_SSIM_MIN_SIDE} px a side are mirrored up "
               f"to {MS_SSIM_MIN_SIDE} px before pytorch-msssim's MS-SSIM (see dnerv_fast.metrics)")


def format_table(rows: Sequence[Row]) -> str:
    """The rows as aligned text, with a note when a row's MS-SSIM is the padded variant.

    With a single video an ``ALL`` row repeats that video's row of the same method and
    setting, so it is not shown.
    """
    if len({r.video for r in rows if r.video != "ALL"}) == 1:
        own = {(r.method, r.setting) for r in rows if r.video != "ALL"}
        rows = [r for r in rows if r.video != "ALL" or (r.method, r.setting) not in own]
    head = (f"{'method':<8} {'setting':<34} {'video':<20} {'frames':>6} {'bpp':>9} "
            f"{'PSNR-RGB':>8} {'PSNR-Y':>7} {'PSNR-U':>7} {'PSNR-V':>7} {'PSNR-YUV':>8} "
            f"{'colour':<22} {'MS-SSIM':>8} {'variant':<15}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.method:<8} {r.setting:<34} {r.video[:20]:<20} {r.frames:>6} "
                     f"{r.bpp:>9.5f} {r.psnr:>8.3f} {r.psnr_y:>7.3f} {r.psnr_u:>7.3f} "
                     f"{r.psnr_v:>7.3f} {r.psnr_yuv:>8.3f} {r.colour or '-':<22} "
                     f"{r.ms_ssim:>8.5f} {r.ms_ssim_variant or '-'}")
    lines.append(YUV_NOTE)
    if any(MS_SSIM_PADDED in r.ms_ssim_variant for r in rows):
        lines.append(PADDED_NOTE)
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: str | os.PathLike, overwrite: bool = False) -> None:
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_HEADERS)
            for r in rows:
                writer.writerow([getattr(r, c) for c in COLUMNS])


def _curves(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """The overall (``ALL``) rows of each codec by rate: one rate-distortion curve each.

    Inpainting region rows are left out: they share the file's bits, not a rate of their own.
    """
    overall = [r for r in rows if r.video == "ALL" and r.method not in REGION_METHODS]
    return {m: sorted((r for r in overall if r.method == m), key=lambda r: r.bpp)
            for m in dict.fromkeys(r.method for r in overall)}


def write_plot(rows: Sequence[Row], path: str | os.PathLike, overwrite: bool = False) -> None:
    """PSNR-RGB, PSNR-YUV and MS-SSIM against bpp for the overall (``ALL``) rows of every
    codec."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(rows)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for method, pts in curves.items():
        style = "o-" if len(pts) > 1 else "*"
        for ax, metric in zip(axes, ("psnr", "psnr_yuv", "ms_ssim")):
            ax.plot([r.bpp for r in pts], [getattr(r, metric) for r in pts], style,
                    label=method, markersize=10 if style == "*" else 5)
    variant = join_variants(r.ms_ssim_variant for pts in curves.values() for r in pts)
    colour = join_variants(r.colour for pts in curves.values() for r in pts)
    for ax, label in zip(axes, (f"PSNR-RGB (dB; {colour})",
                                "PSNR-YUV (dB; (4 Y + U + V) / 6, CompressAI)",
                                f"MS-SSIM ({variant})")):
        ax.set_xscale("log")  # neural and classical points can lie decades apart
        ax.set_xlabel("bits per pixel (log scale)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def json_path(folder: str | os.PathLike, method: str) -> Path:
    """``FOLDER/<method>.json``, the method lower-cased without punctuation (``dnerv.json``)."""
    return Path(folder) / f"{re.sub(r'[^a-z0-9]+', '', method.lower())}.json"


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: such a value is written as null."""
    return value if math.isfinite(value) else None


def compressai_results(rows: Sequence[Row]) -> dict[str, dict]:
    """One CompressAI results object per codec, by method: ``name``, ``description``,
    ``ms-ssim-variant``, ``colour`` and ``results`` (``bpp``, ``psnr-rgb``, ``ms-ssim-rgb``,
    ``psnr-y``, ``psnr-u``, ``psnr-v``, ``psnr-yuv`` ((4 Y + U + V) / 6, as CompressAI),
    ``psnr-yuv-mse411`` (Cool-chic), ``psnr-yuv-611`` (DCVC): one value per point of its
    overall curve, by rate)."""
    out = {}
    for method, pts in _curves(rows).items():
        variant = join_variants(r.ms_ssim_variant for r in pts)
        colour = join_variants(r.colour for r in pts)
        settings = "; ".join(dict.fromkeys(r.setting for r in pts))
        out[method] = {
            "name": method,
            "description": f"{method} ({settings}), {pts[0].frames} frames, PSNR-RGB, "
                           f"PSNR-Y/U/V/YUV ({colour}; psnr-yuv (4Y+U+V)/6 as CompressAI, "
                           f"psnr-yuv-mse411 Cool-chic's MSE 4:1:1, psnr-yuv-611 DCVC's "
                           f"(6Y+U+V)/8) and MS-SSIM ({variant}) by dnerv_fast eval",
            "ms-ssim-variant": variant,
            "colour": colour,
            "results": {"bpp": [r.bpp for r in pts],
                        "psnr-rgb": [_finite(r.psnr) for r in pts],
                        "ms-ssim-rgb": [_finite(r.ms_ssim) for r in pts],
                        **{key.replace("_", "-"): [_finite(getattr(r, key)) for r in pts]
                           for key in YUV_FIELDS}},
        }
    return out


def check_json_outputs(folder: str | os.PathLike, methods: Sequence[str],
                       overwrite: bool = False) -> list[Path]:
    """The JSON files :func:`write_json` would write for ``methods``, checked before any
    work: in an existing ``folder`` each file (exists only with ``overwrite``), else the
    folder itself (its parent must exist)."""
    paths = [json_path(folder, m) for m in methods]
    if Path(folder).is_dir():
        for p in paths:
            check_output(p, overwrite)
    else:
        check_folder_output(folder, overwrite=False)
    return paths


def write_json(rows: Sequence[Row], folder: str | os.PathLike, overwrite: bool = False
               ) -> list[Path]:
    """Write :func:`compressai_results` as one file per codec under ``folder`` (what
    ``python -m compressai.utils.plot -f FILE...`` reads: one curve per file). A new folder
    appears with all its files at once; in an existing one each file is written atomically.
    Returns the paths written."""
    results = compressai_results(rows)
    paths = check_json_outputs(folder, list(results), overwrite)
    texts = [(json.dumps(obj, indent=2) + "\n").encode() for obj in results.values()]
    if Path(folder).is_dir():
        for p, text in zip(paths, texts):
            write_bytes_atomic(p, text, overwrite)
    else:
        with atomic_dir(folder) as tmp:
            for p, text in zip(paths, texts):
                write_bytes_atomic(tmp / p.name, text)
    return paths
