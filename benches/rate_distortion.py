"""Rate-distortion sweep: D-NeRV at several model sizes / weight bits beside x264 and x265.

Each size is trained once; its other bit depths re-quantise the same weights (``encode``
with ``keep_checkpoint`` / ``resume``). Every point is a real .dnerv file measured by ``eval``;
the anchors are coded once, on the same frames. Writes ``rd.csv``, ``rd.png`` and the table under ``--out``.

    python benches/rate_distortion.py carphone.mp4 --out rd-carphone --points tiny:8 tiny:6 \\
        --epochs 60 --crf 18 23 28 33 38
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from dnerv_fast.atomic import atomic_dir
from dnerv_fast.codec.evaluate import evaluate
from dnerv_fast.codec.pipeline import encode
from dnerv_fast.codec.report import format_table, write_csv, write_plot


def _point(text: str) -> tuple[str, int]:
    size, _, bits = text.partition(":")
    return size, int(bits or 8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--out", type=Path, required=True, help="folder for files, CSV and plot")
    parser.add_argument("--points", nargs="+", type=_point, default=[("tiny", 8)],
                        help="SIZE:BITS per D-NeRV point (default tiny:8)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--keyframe-codec", default="webp")
    parser.add_argument("--keyframe-quality", type=int)
    parser.add_argument("--crf", type=int, nargs="+", default=[18, 23, 28, 33, 38])
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    rows = []
    with atomic_dir(args.out, args.overwrite) as tmp:
        trained: dict[str, Path] = {}  # size -> kept float checkpoint of its first point
        for i, (size, bits) in enumerate(args.points):
            start = time.perf_counter()
            path = tmp / f"{size}-{bits}bit.dnerv"
            if size in trained:  # same network, other bits: re-quantise, no training
                shutil.copyfile(trained[size], f"{path}.ckpt")
            encode(args.videos, path, size=size, epochs=args.epochs, bits=bits,
                   batch_size=args.batch_size, max_frames=args.max_frames,
                   keyframe_codec=args.keyframe_codec, keyframe_quality=args.keyframe_quality,
                   resume=size in trained, keep_checkpoint=size not in trained)
            trained.setdefault(size, Path(f"{path}.ckpt"))
            print(f"{size} {bits}-bit: encoded in {time.perf_counter() - start:.0f} s", flush=True)
            # The anchors do not depend on the point: code them with the first one only.
            rows += evaluate(path, args.videos, crfs=args.crf if i == 0 else (),
                             anchors=("x264", "x265"), progress=False)
        for checkpoint in trained.values():
            checkpoint.unlink()
        write_csv(rows, tmp / "rd.csv")
        write_plot(rows, tmp / "rd.png")
        table = format_table(rows)
        (tmp / "rd.txt").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
