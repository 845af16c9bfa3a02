"""Rate-distortion on real video: D-NeRV at several target rates beside x264 and x265.

Every D-NeRV point is its own encode with ``target_bpp`` (the rate target picks the widths
and keyframe quality, every byte of the file counted), trained for the same epochs; every
point is a real ``.dnerv`` file measured by ``evaluate``. The anchors are real x264/x265
files (preset medium by default) on the same frames, in yuv444p and yuv420p, coded once.

Writes under ``--out``: ``rd.csv`` (every row), ``rd.png`` (the curves), ``rd.md`` (the
table, the CPU time of each encode, and how far D-NeRV lies from each anchor: the anchor's
PSNR at D-NeRV's rate, log-rate interpolated, and where the curves cross when they do),
``rd.json`` (the same numbers for tools) and one CompressAI results file per codec.

    python benches/rate_distortion.py carphone.mp4 --out rd-carphone \\
        --targets 0.1 0.3 1 --epochs 40 --crf 12 20 28 36 44 51

Training follows the default recipe (``dnerv_fast.train.recipe``: the peak learning rate
fitted to the run's steps and network) unless ``--lr`` or ``--batch-size`` are given.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dnerv_fast.atomic import atomic_dir
from dnerv_fast.codec.evaluate import DNERV, Row, evaluate
from dnerv_fast.codec.pipeline import encode
from dnerv_fast.codec.rate import RatePlan
from dnerv_fast.codec.report import format_table, write_csv, write_json, write_plot


def _overall(rows: list[Row], method: str) -> list[Row]:
    return sorted((r for r in rows if r.video == "ALL" and r.method == method),
                  key=lambda r: r.bpp)


def _choice(plan: RatePlan) -> str:
    """The network and keyframe quality a rate plan chose, in one short cell."""
    c = plan.network.config
    return (f"{plan.network.parameters:,} params (fc {c.fc_dim}, stem {c.stem_dim}), "
            f"keyframe q {plan.quality}, {plan.keyframe_bytes / plan.predicted_bytes:.0%} keyframes")


def psnr_at(curve: list[Row], bpp: float) -> float | None:
    """The curve's PSNR at ``bpp`` (PSNR linear in log bpp), None outside its range."""
    if len(curve) < 2 or not curve[0].bpp <= bpp <= curve[-1].bpp:
        return None
    return float(np.interp(math.log(bpp), [math.log(r.bpp) for r in curve],
                           [r.psnr for r in curve]))


def bpp_at(curve: list[Row], psnr: float) -> float | None:
    """The curve's bpp at ``psnr`` (log bpp linear in PSNR), None outside its range or where
    the curve's PSNR does not rise with its rate."""
    quality = [r.psnr for r in curve]
    if len(curve) < 2 or any(b <= a for a, b in zip(quality, quality[1:])) or \
            not quality[0] <= psnr <= quality[-1]:
        return None
    return float(math.exp(np.interp(psnr, quality, [math.log(r.bpp) for r in curve])))


def crossings(dnerv: list[Row], anchor: list[Row]) -> list[float]:
    """bpp where the two curves cross, over the rates both cover (log bpp, linear pieces)."""
    lo = max(dnerv[0].bpp, anchor[0].bpp) if dnerv and anchor else 1.0
    hi = min(dnerv[-1].bpp, anchor[-1].bpp) if dnerv and anchor else 0.0
    if len(dnerv) < 2 or len(anchor) < 2 or hi <= lo:
        return []
    grid = np.exp(np.linspace(math.log(lo), math.log(hi), 400))
    grid[0], grid[-1] = lo, hi         # exp(log(x)) can land just outside the curves' range
    gap = np.array([psnr_at(dnerv, b) - psnr_at(anchor, b) for b in grid])
    return [float(grid[i]) for i in range(1, len(grid)) if np.sign(gap[i]) != np.sign(gap[i - 1])]


def comparison(rows: list[Row]) -> list[dict]:
    """For each D-NeRV point and anchor: the anchor's PSNR at that rate and the gap."""
    dnerv = _overall(rows, DNERV)
    out = []
    for method in dict.fromkeys(r.method for r in rows if r.method != DNERV):
        anchor = _overall(rows, method)
        for point in dnerv:
            at, rate = psnr_at(anchor, point.bpp), bpp_at(anchor, point.psnr)
            out.append({"anchor": method, "bpp": point.bpp, "dnerv_psnr": point.psnr,
                        "anchor_psnr": at, "gap_db": None if at is None else point.psnr - at,
                        "anchor_bpp_at_psnr": rate,
                        "rate_ratio": None if rate is None else point.bpp / rate})
        out.append({"anchor": method, "crossings_bpp": crossings(dnerv, anchor)})
    return out


def report(rows: list[Row], encodes: list[dict], compared: list[dict], command: str) -> str:
    order = {m: i for i, m in enumerate(dict.fromkeys(r.method for r in rows))}
    table = format_table(sorted(rows, key=lambda r: (order[r.method], r.video != "ALL", r.bpp)))
    lines = ["```", command, "```", "", table, "",
             "| target bpp | file bpp | PSNR (dB) | network | encode CPU s | wall s |",
             "|---|---|---|---|---|---|"]
    for e in encodes:
        lines.append(f"| {e['target_bpp']:g} | {e['bpp']:.4f} | {e['psnr']:.2f} | "
                     f"{e['choice']} | {e['cpu_s']:.0f} | {e['wall_s']:.0f} |")
    lines += ["", "| anchor | D-NeRV bpp | D-NeRV PSNR | anchor PSNR at that bpp | gap (dB) | "
              "anchor bpp at that PSNR | D-NeRV's bits / anchor's |",
              "|---|---|---|---|---|---|---|"]
    for c in compared:
        if "crossings_bpp" in c:
            cross = ", ".join(f"{b:.4f}" for b in c["crossings_bpp"]) or "none in the common range"
            lines.append(f"| {c['anchor']} | curves cross at bpp: {cross} | | | | | |")
        else:
            outside = "outside its curve"
            at = outside if c["anchor_psnr"] is None else f"{c['anchor_psnr']:.2f}"
            gap = "" if c["gap_db"] is None else f"{c['gap_db']:+.2f}"
            rate = outside if c["anchor_bpp_at_psnr"] is None else f"{c['anchor_bpp_at_psnr']:.4f}"
            ratio = "" if c["rate_ratio"] is None else f"{c['rate_ratio']:.1f}x"
            lines.append(f"| {c['anchor']} | {c['bpp']:.4f} | {c['dnerv_psnr']:.2f} | {at} | {gap} "
                         f"| {rate} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", help="video files or frame folders, one network")
    parser.add_argument("--out", type=Path, required=True, help="folder for files, tables, plot")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.05, 0.1, 0.2],
                        help="D-NeRV target bits per pixel, one encode each")
    parser.add_argument("--size", default="tiny", help="configuration whose widths are scaled")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (default: the default recipe's)")
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--keyframe-codec", help="default: the encoder's default")
    parser.add_argument("--crf", type=int, nargs="+", default=[12, 20, 28, 36, 44, 51])
    parser.add_argument("--pix-fmt", nargs="+", default=["yuv444p", "yuv420p"])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--record", metavar="NAME",
                        help="also write the figures to docs/results/NAME.json")
    args = parser.parse_args(argv)
    command = "python benches/rate_distortion.py " + " ".join(sys.argv[1:] if argv is None else argv)
    codec = {} if args.keyframe_codec is None else {"keyframe_codec": args.keyframe_codec}

    rows: list[Row] = []
    encodes = []
    with atomic_dir(args.out, args.overwrite) as tmp:
        for i, target in enumerate(args.targets):
            path = tmp / f"dnerv-{target:g}bpp.dnerv"
            wall, cpu = time.perf_counter(), time.process_time()
            result = encode(args.videos, path, size=args.size, epochs=args.epochs,
                            target_bpp=target, batch_size=args.batch_size, lr=args.lr,
                            max_frames=args.max_frames, **codec)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            # The anchors do not depend on the point: code them with the first one only.
            got = evaluate(path, args.videos, crfs=args.crf if i == 0 else (),
                           anchors=("x264", "x265"), preset=args.preset, progress=False,
                           pix_fmts=args.pix_fmt)
            rows += got
            overall = _overall(got, DNERV)[0]
            plan = result.rate_plan
            encodes.append({"target_bpp": target, "bpp": overall.bpp, "psnr": overall.psnr,
                            "choice": "" if plan is None else _choice(plan),
                            "cpu_s": cpu, "wall_s": wall, "epochs": args.epochs,
                            "lr": result.recipe.lr if result.recipe else args.lr})
            # Every measured row goes to the output as it comes, so that a failure later
            # (the folder appears only when complete) loses no figure.
            print(format_table(got), flush=True)
            print(f"target {target:g} bpp: {overall.bpp:.4f} bpp, {overall.psnr:.2f} dB, "
                  f"{cpu:.0f} CPU s", flush=True)
        compared = comparison(rows)
        write_csv(rows, tmp / "rd.csv")
        write_plot(rows, tmp / "rd.png")
        write_json(rows, tmp / "compressai")
        text = report(rows, encodes, compared, command)
        (tmp / "rd.md").write_text(text)
        (tmp / "rd.json").write_text(json.dumps({"encodes": encodes, "comparison": compared},
                                                indent=1))
    if args.record:
        from results import record      # benches/results.py (benches/ is on sys.path)
        record(args.record, {"settings": {"videos": [Path(v).name for v in args.videos],
                                          "max_frames": args.max_frames, "size": args.size,
                                          "epochs": args.epochs, "batch_size": args.batch_size,
                                          "lr": args.lr, "preset": args.preset},
                             "encodes": encodes, "comparison": compared,
                             "anchors": [asdict(r) for r in rows if r.video == "ALL"]},
               command, plot=args.out / "rd.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
