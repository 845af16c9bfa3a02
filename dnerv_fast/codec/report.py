"""Present evaluation rows: a text table, a CSV file and a rate-distortion plot."""
from __future__ import annotations

import csv
import dataclasses
import os
from typing import Sequence

from dnerv_fast.codec.atomic import atomic_path
from dnerv_fast.codec.evaluate import REGION_METHODS, Row

COLUMNS = [f.name for f in dataclasses.fields(Row)]


def format_table(rows: Sequence[Row]) -> str:
    head = f"{'method':<8} {'setting':<34} {'video':<20} {'frames':>6} {'bpp':>9} {'PSNR':>7} {'MS-SSIM':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.method:<8} {r.setting:<34} {r.video[:20]:<20} {r.frames:>6} "
                     f"{r.bpp:>9.5f} {r.psnr:>7.3f} {r.ms_ssim:>8.5f}")
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: str | os.PathLike, overwrite: bool = False) -> None:
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for r in rows:
                writer.writerow([getattr(r, c) for c in COLUMNS])


def write_plot(rows: Sequence[Row], path: str | os.PathLike, overwrite: bool = False) -> None:
    """PSNR and MS-SSIM against bpp for the overall (``ALL``) rows of every codec.

    Inpainting region rows are left out: they share the file's bits, not a rate of their own.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = [r for r in rows if r.video == "ALL" and r.method not in REGION_METHODS]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r.method for r in overall):
        pts = sorted((r for r in overall if r.method == method), key=lambda r: r.bpp)
        style = "o-" if len(pts) > 1 else "*"
        for ax, metric in zip(axes, ("psnr", "ms_ssim")):
            ax.plot([r.bpp for r in pts], [getattr(r, metric) for r in pts], style,
                    label=method, markersize=10 if style == "*" else 5)
    for ax, label in zip(axes, ("PSNR (dB, RGB)", "MS-SSIM")):
        ax.set_xscale("log")  # neural and classical points can lie decades apart
        ax.set_xlabel("bits per pixel (log scale)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
