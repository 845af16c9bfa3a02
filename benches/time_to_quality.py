"""Time to quality: PSNR of the written file against wall time and against epochs, for the
default recipe and the paper's, on real clips.

Every point is its own encode (``dnerv_fast.encode``, one process, one after the other) of
the clip for that many epochs, timed from the call to the written file, and measured as
the file decodes (RGB PSNR after quantisation). On a GPU (``--device cuda``) the same bench
gives the GPU curve.

    python benches/time_to_quality.py --clips carphone bikes --budgets 5 10 20 40 \\
        --vtest PATH/vtest.avi

Clips are the crops of ``benches/lr_sweep.py`` (same origins, same sources).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lr_sweep import prepare_clip  # noqa: E402
from results import RESULTS_DIR, command_line, record  # noqa: E402


def point(path: Path, recipe: str, epochs: int, args: argparse.Namespace, work: Path
          ) -> dict[str, Any]:
    """One timed encode and its file's PSNR."""
    from dnerv_fast.codec.pipeline import encode
    from dnerv_fast.codec.summary import mean_psnr
    from dnerv_fast.media.video_io import read_video
    out = work / "ttq.dnerv"
    start = time.perf_counter()
    result = encode([path], out, size=args.size, target_bpp=args.target_bpp, epochs=epochs,
                    recipe=recipe, seed=args.seed, max_frames=args.frames, overwrite=True,
                    progress=False, device=args.device)
    seconds = time.perf_counter() - start
    truth = read_video(path, max_frames=args.frames).frames
    psnr = mean_psnr([result.render(0)], [truth])
    assert result.recipe is not None
    return {"recipe": recipe, "epochs": epochs, "seconds": seconds, "psnr": psnr,
            "bpp": result.bpp, "parameters": result.header["parameters"],
            "lr": result.recipe.lr, "batch_size": result.recipe.batch_size,
            "steps": result.recipe.steps}


def plot(curves: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (by_time, by_epochs) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"default": "o-", "paper": "s--"}
    for i, (clip, rows) in enumerate(curves.items()):
        for recipe in ("default", "paper"):
            sel = sorted((r for r in rows if r["recipe"] == recipe), key=lambda r: r["epochs"])
            if not sel:
                continue
            label = f"{clip}, {recipe} recipe"
            by_time.plot([r["seconds"] for r in sel], [r["psnr"] for r in sel], styles[recipe],
                         color=f"C{i}", label=label)
            by_epochs.plot([r["epochs"] for r in sel], [r["psnr"] for r in sel], styles[recipe],
                           color=f"C{i}", label=label)
    by_time.set_xlabel("wall time of the encode (s)")
    by_epochs.set_xlabel("epochs")
    for ax in (by_time, by_epochs):
        ax.set_ylabel("PSNR of the written file (dB, RGB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", default=["carphone", "bikes"])
    p.add_argument("--budgets", type=int, nargs="+", default=[5, 10, 20, 40], help="epochs")
    p.add_argument("--recipes", nargs="+", default=["default", "paper"])
    p.add_argument("--size", default="tiny")
    p.add_argument("--target-bpp", type=float, default=None)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--vtest", type=Path, default=None, help="path of OpenCV's vtest.avi")
    p.add_argument("--clip-dir", type=Path, default=Path(tempfile.gettempdir()) / "lr_sweep_clips")
    p.add_argument("--name", default="time_to_quality",
                   help="results name (time_to_quality_gpu for a GPU run)")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch
    args = parse_args(argv)
    args.clip_dir.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="ttq_") as work:
        for clip in args.clips:
            path = prepare_clip(clip, args.frames, args.crop, args.clip_dir, args.vtest)
            for recipe in args.recipes:
                for epochs in args.budgets:
                    row = point(path, recipe, epochs, args, Path(work))
                    curves.setdefault(clip, []).append(row)
                    print(f"{clip} {recipe} {epochs} epochs: {row['psnr']:.2f} dB in "
                          f"{row['seconds']:.1f} s (lr {row['lr']:.3g}, {row['steps']} steps)",
                          flush=True)
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and
                                                 torch.cuda.is_available()) else "cpu"
    network = args.size if args.target_bpp is None else f"{args.size} at {args.target_bpp:g} bpp"
    result = {"device": device, "clips": args.clips, "frames": args.frames,
              "crop": f"{args.crop}x{args.crop}", "network": network, "seed": args.seed,
              "curves": curves}
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "time_to_quality.png"
        plot(curves, png, f"{network}, {args.crop}x{args.crop} crops, {args.frames} frames, "
                          f"{device}, torch threads {torch.get_num_threads()}")
        record(args.name, result, command_line("benches/time_to_quality.py", argv), plot=png,
               directory=args.results)
    return result


if __name__ == "__main__":
    main()
