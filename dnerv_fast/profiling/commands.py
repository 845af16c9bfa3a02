"""``dnerv-fast profile``: decoding FPS as a table and as JSON."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..atomic import write_bytes_atomic


def _frame_size(text: str) -> tuple[int, int] | None:
    if text.lower() == "none":
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"frame size must look like 1024x1920 (HxW) or none, got {text!r}") from None
    return h, w


def profile_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Decode FPS of a D-NeRV network: 8-frame clips of one patch video (keyframes "
                     "shared by neighbouring clips, each encoded once) and full frames (all "
                     "patches, stitched, 8-bit).")
    p.add_argument("--size", default="uvg-M", help="model configuration (dnerv-fast info)")
    p.add_argument("--backend",
                   help="fused-op backend: auto or a name dnerv-fast backends lists (default: "
                        "$DNERV_FAST_BACKEND, else auto)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="network precision")
    p.add_argument("--compile", action="store_true", help="torch.compile the decoder")
    p.add_argument("--cuda-graphs", action="store_true", help="replay the decoder as a CUDA graph")
    p.add_argument("--batch", type=int, default=1, help="consecutive clips decoded per call")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--frame-size", type=_frame_size, default=(1024, 1920),
                   help="full-frame size HxW for the stitched measurement, or none")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before measuring")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (median and IQR)")
    p.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                   help="skip the per-stage time breakdown (torch profiler)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON (field fps: frames/s)")


def run_profile_command(args: argparse.Namespace) -> int:
    from .decode_speed import ProfileSettings, run_profile
    settings = ProfileSettings(size=args.size, backend=args.backend, dtype=args.dtype, compile=args.compile,
                               cuda_graphs=args.cuda_graphs, batch=args.batch, device=args.device,
                               frame_size=args.frame_size, warmup=args.warmup, repeats=args.repeats,
                               breakdown=args.breakdown)
    result = run_profile(settings, progress=lambda msg: print(f"[profile] {msg}", file=sys.stderr))
    print(format_report(result))
    if args.json:
        write_bytes_atomic(args.json, json.dumps(result, indent=2).encode(), overwrite=args.overwrite)
    return 0


def _noisy(stats: dict[str, Any]) -> str:
    return f"  NOISY ({stats['iqr_ms'] / stats['median_ms']:.0%})" if stats["noisy"] else ""


def format_report(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [f"D-NeRV {s['size']} on {r['device']}: backend {r['backend']}, {s['dtype']}"
             f"{', compiled' if s['compile'] else ''}{', CUDA graphs' if s['cuda_graphs'] else ''}, "
             f"batch {s['batch']} clip(s)",
             f"{'workload':<28}{'median ms':>11}{'IQR ms':>9}{'FPS':>10}"]
    c = r["clip"]
    lines.append(f"{'clips (patch frames)':<28}{c['median_ms']:>11.2f}{c['iqr_ms']:>9.2f}"
                 f"{c['fps']:>10.1f}{_noisy(c)}")
    if "full_frame" in r:
        f = r["full_frame"]
        label = f"full {f['size'][0]}x{f['size'][1]} ({f['patches']} patches)"
        lines.append(f"{label:<28}{f['median_ms']:>11.2f}{f['iqr_ms']:>9.2f}{f['fps']:>10.2f}"
                     f"{_noisy(f)}")
    if c["noisy"] or r.get("full_frame", {}).get("noisy"):
        from .timing import NOISY_IQR_SHARE
        lines.append(f"NOISY: an IQR above {NOISY_IQR_SHARE:.0%} of its median; do not quote it. "
                     f"Rerun on a quiet machine, or with more --repeats.")
    lines.append("memory: " + ", ".join(f"{k} {v:.0f}" for k, v in r["memory"].items())
                 + f"; malloc {r['malloc']}")
    if "vs_fp32_reference" in r:
        v = r["vs_fp32_reference"]
        lines.append(f"vs fp32 reference: max |diff| {v['max_abs_diff']:.2e}, PSNR {v['psnr_db']:.2f} dB")
    if "breakdown" in r:
        lines.append(f"{'stage':<20}{'calls':>6}{'ms':>10}{'share':>8}")
        lines += [f"{b['stage']:<20}{b['calls']:>6}{b['ms']:>10.2f}{b['share']:>8.1%}" for b in r["breakdown"]]
    return "\n".join(lines)
