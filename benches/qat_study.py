"""What quantisation-aware training buys: the float network, quantised after training (PTQ),
and trained through the quantiser (QAT), at each bit depth, on real video.

For each ``--bits``: one encode without QAT, whose kept checkpoint holds the float network
(decoded unquantised for the float PSNR) and whose file is the PTQ point; one encode with the
last ``--share`` of the same epochs in QAT. Each bit depth plans its own network for
``--target-bpp`` (the rate target counts every byte, so fewer bits buy more weights). PSNR is
measured on the real frames as ``evaluate`` measures it.

Writes ``qat.json`` and ``qat.md`` under ``--out``::

    python benches/qat_study.py carphone.mp4 --frames 48 --epochs 40 --target-bpp 1 \\
        --bits 6 5 --out qat-study
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dnerv_fast.atomic import atomic_dir
from dnerv_fast.codec.evaluate import frame_metrics
from dnerv_fast.codec.pipeline import Encoded, encode
from dnerv_fast.media.video_io import read_video


def _psnr(encoded: Encoded, reference: np.ndarray) -> float:
    return float(np.mean(frame_metrics(encoded.render(0), reference)[0]))


def study(video: str, out: Path, frames: int, epochs: int, target: float, lr: float | None,
          bits: int, share: float) -> dict:
    """The three PSNRs (float, PTQ, QAT) of one bit depth, with both files' rates."""
    reference = read_video(video, max_frames=frames).frames
    common = dict(size="tiny", epochs=epochs, target_bpp=target, bits=bits, lr=lr,
                  max_frames=frames, progress=False, overwrite=True)
    start = time.perf_counter()
    ptq = encode([video], out / f"ptq-{bits}.dnerv", qat=0.0, keep_checkpoint=True, **common)
    ptq_psnr = _psnr(ptq, reference)
    ckpt = out / f"ptq-{bits}.dnerv.ckpt"
    ptq.model.load_state_dict(torch.load(ckpt, weights_only=True)["model"])
    ckpt.unlink()
    float_psnr = _psnr(ptq, reference)
    qat = encode([video], out / f"qat-{bits}.dnerv", qat=share, **common)
    qat_psnr = _psnr(qat, reference)
    params = sum(p.numel() for p in qat.model.parameters())
    return {"bits": bits, "parameters": params, "float_psnr": float_psnr,
            "ptq_psnr": ptq_psnr, "ptq_bpp": ptq.bpp, "qat_psnr": qat_psnr, "qat_bpp": qat.bpp,
            "qat_bits_per_parameter": qat.section_bytes["weights"] * 8 / params,
            "ptq_loss_db": float_psnr - ptq_psnr, "qat_loss_db": float_psnr - qat_psnr,
            "wall_s": time.perf_counter() - start}


def report(rows: list[dict], command: str, share: float) -> str:
    lines = ["```", command, "```", "",
             f"| bits | parameters | float dB | PTQ dB (change) | QAT, last {share:.0%} of the "
             "epochs, dB (change) | bpp PTQ / QAT | weights, bits per parameter (QAT) | "
             "wall s (both encodes) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['bits']} | {r['parameters']:,} | {r['float_psnr']:.3f} | "
                     f"{r['ptq_psnr']:.3f} ({-r['ptq_loss_db']:+.3f}) | {r['qat_psnr']:.3f} "
                     f"({-r['qat_loss_db']:+.3f}) | {r['ptq_bpp']:.4f} / {r['qat_bpp']:.4f} | "
                     f"{r['qat_bits_per_parameter']:.3f} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", help="a video file or frame folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for files and tables")
    parser.add_argument("--frames", type=int, default=48, help="first frames used")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--target-bpp", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (default: the default recipe's for the run)")
    parser.add_argument("--bits", type=int, nargs="+", default=[6, 5])
    parser.add_argument("--share", type=float, default=0.2, help="QAT share of the epochs")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--record", metavar="NAME",
                        help="also write the figures to docs/results/NAME.json")
    args = parser.parse_args(argv)
    command = "python benches/qat_study.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []
    with atomic_dir(args.out, args.overwrite) as tmp:
        for bits in args.bits:
            rows.append(study(args.video, tmp, args.frames, args.epochs, args.target_bpp,
                              args.lr, bits, args.share))
            print(json.dumps(rows[-1]), flush=True)
        text = report(rows, command, args.share)
        (tmp / "qat.md").write_text(text)
        (tmp / "qat.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    if args.record:
        from results import record      # benches/results.py (benches/ is on sys.path)
        record(args.record, {"settings": {"video": Path(args.video).name, "frames": args.frames,
                                          "epochs": args.epochs, "target_bpp": args.target_bpp,
                                          "lr": args.lr, "qat_share": args.share},
                             "rows": rows}, command)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
