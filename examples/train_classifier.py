r"""Train a small video classifier directly on videos compressed into one .dnerv file.

The paper trains an action classifier (UCF101) on videos decoded from a D-NeRV; this is the
same loop in miniature. :class:`dnerv_fast.DNeRVDataset` decodes clips from the file as they
are asked for (no decoded copy on disk), DataLoader workers decode in parallel, and a tiny
3-D convolutional network learns from them.

Without arguments it makes its own task: short textured videos whose pattern drifts right,
left, down or up (one class per direction), encoded with the ``tiny`` configuration into
``--workdir``; it runs in about a minute on a CPU. With ``--dnerv FILE --labels CSV`` it
trains on your own file instead. The CSV has a header and the columns ``name,label`` and
optionally ``split`` (``train`` or ``val``, other values are left out; without it every video
trains); labels may be any strings. With ``--device cuda`` clips are decoded on the GPU in the
main process (no workers).

    python examples/train_classifier.py --workers 2
    python examples/train_classifier.py --dnerv ucf.dnerv --labels ucf.csv \
        --clip-frames 16 --input-size 112 --epochs 20 --workers 4
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from dnerv_fast import DNeRVDataset
from dnerv_fast.codec.pipeline import encode
from dnerv_fast.media.video_io import write_video

DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}


def drifting_texture(direction: tuple[int, int], frames: int, size: int,
                     rng: np.random.Generator, speed: int = 2) -> np.ndarray:
    """uint8 [frames, size, size, 3]: a random smooth colour texture moving ``speed`` px a
    frame in ``direction`` (x, y). Appearance is random, so only motion tells classes apart.
    """
    reach = speed * frames
    canvas = rng.standard_normal((size + 2 * reach, size + 2 * reach, 3))
    fy = np.fft.fftfreq(canvas.shape[0])[:, None, None]
    fx = np.fft.fftfreq(canvas.shape[1])[None, :, None]
    canvas = np.fft.ifft2(np.fft.fft2(canvas, axes=(0, 1)) * np.exp(-(fx ** 2 + fy ** 2) * 1500),
                          axes=(0, 1)).real                        # blobs of about 20 px
    canvas = 128 + 100 * canvas / np.abs(canvas).max()
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        y, x = reach - direction[1] * speed * t, reach - direction[0] * speed * t
        out[t] = canvas[y:y + size, x:x + size].round()
    return out


def make_task(workdir: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """Write the generated videos, encode them into one file; returns (.dnerv, labels CSV)."""
    rng = np.random.default_rng(args.seed)
    sources, rows = [], []
    for cls in list(DIRECTIONS)[:args.classes]:
        for i in range(args.videos_per_class):
            name = f"{cls}_{i}"
            path = workdir / "videos" / f"{name}.mp4"
            write_video(drifting_texture(DIRECTIONS[cls], args.frames, args.size, rng), path,
                        overwrite=True)
            sources.append(path)
            rows.append((name, cls, "val" if i == args.videos_per_class - 1 else "train"))
    labels = workdir / "labels.csv"
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows([("name", "label", "split"), *rows])
    dnerv = workdir / "motion.dnerv"
    result = encode(sources, dnerv, size="tiny", epochs=args.encode_epochs, batch_size=8,
                    lr=args.encode_lr, keyframe_quality=90, seed=args.seed, overwrite=True,
                    progress=not args.quiet)
    sections = ", ".join(f"{k} {v}" for k, v in result.section_bytes.items())
    print(f"encoded {len(sources)} videos into {dnerv}: {result.file_bytes} bytes, "
          f"{result.bpp:.2f} bits per pixel\n  ({sections} bytes: a few seconds of video "
          "do not amortise even the tiny model's weights)")
    return dnerv, labels


def read_labels(path: Path) -> tuple[dict[str, int], dict[str, str], list[str]]:
    """(label index per video, split per video, class names); classes sorted by name."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"name", "label"} <= set(rows[0]):
        raise SystemExit(f"{path}: expected a header with the columns name,label[,split]")
    classes = sorted({r["label"] for r in rows})
    labels = {r["name"]: classes.index(r["label"]) for r in rows}
    split = {r["name"]: (r.get("split") or "train").strip() for r in rows}
    return labels, split, classes


class Resize:
    """Resize the frames of a [3, T, H, W] clip (a class, so spawned workers can pickle it)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.shape[-2:] == (self.size, self.size):
            return clip
        frames = F.interpolate(clip.transpose(0, 1), size=(self.size, self.size),
                               mode="bilinear", antialias=True, align_corners=False)
        return frames.transpose(0, 1)


def classifier(classes: int) -> nn.Module:
    """A tiny 3-D CNN: three conv blocks, global average pooling, a linear layer.

    The input is normalised per clip and channel first, so that what the network sees is
    how the pattern changes rather than its mean colour (without it, it learns nothing here).
    """
    def block(cin: int, cout: int, pool: tuple[int, int, int]) -> list[nn.Module]:
        return [nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(),
                nn.MaxPool3d(pool)]
    return nn.Sequential(nn.InstanceNorm3d(3), *block(3, 16, (1, 2, 2)),
                         *block(16, 32, (2, 2, 2)), *block(32, 64, (1, 1, 1)),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(64, classes))


def run_epoch(model: nn.Module, loader: DataLoader, device: torch.device, desc: str,
              optimizer: torch.optim.Optimizer | None, steps: int,
              quiet: bool) -> tuple[float, float]:
    """Mean loss and accuracy over one pass (at most ``steps`` batches when positive)."""
    model.train(optimizer is not None)
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=desc, disable=quiet, leave=False,
               total=min(len(loader), steps) if steps > 0 else len(loader))
    with torch.set_grad_enabled(optimizer is not None):
        for step, (clips, labels) in enumerate(bar):
            if 0 < steps <= step:
                break
            clips, labels = clips.to(device), labels.to(device)
            logits = model(clips)
            loss = F.cross_entropy(logits, labels)
            if optimizer is not None:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.2f}")
    return total_loss / max(seen, 1), correct / max(seen, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_argument_group("data (default: generate a motion-direction task)")
    src.add_argument("--dnerv", type=Path, help="an existing .dnerv file (needs --labels)")
    src.add_argument("--labels", type=Path, help="CSV with name,label[,split]")
    src.add_argument("--workdir", type=Path, default=Path("dnerv-classifier"),
                     help="where the generated videos and .dnerv file go")
    src.add_argument("--classes", type=int, default=3, choices=range(2, 5),
                     help="motion directions to tell apart")
    src.add_argument("--videos-per-class", type=int, default=4, help="the last one is held out")
    src.add_argument("--frames", type=int, default=16, help="frames per generated video")
    src.add_argument("--size", type=int, default=64, help="generated frame side")
    src.add_argument("--encode-epochs", type=int, default=5, help="D-NeRV training epochs")
    src.add_argument("--encode-lr", type=float, default=5e-3,
                     help="D-NeRV learning rate (high: the tiny model gets few epochs here)")
    p.add_argument("--clip-frames", type=int, default=8, help="frames per clip (multiple of 8)")
    p.add_argument("--input-size", type=int, default=32, help="clips are resized to this square")
    p.add_argument("--epochs", type=int, default=10, help="classifier training epochs")
    p.add_argument("--steps", type=int, default=0,
                   help="at most this many batches an epoch (0: all)")
    p.add_argument("--batch-size", type=int, default=4, help="clips per batch")
    p.add_argument("--lr", type=float, default=3e-3, help="classifier learning rate")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers decoding in parallel")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where clips are decoded and the classifier trains")
    p.add_argument("--seed", type=int, default=0, help="videos, weights and shuffling")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if (args.dnerv is None) != (args.labels is None):
        p.error("--dnerv and --labels go together")
    return args


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the example; returns the last epoch's metrics (``val_*`` only with a val split)."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    workers = args.workers
    if device.type == "cuda" and workers:
        print("decoding on the GPU: using --workers 0 (workers cannot share a CUDA context)")
        workers = 0
    if args.dnerv is None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        args.dnerv, args.labels = make_task(args.workdir, args)
    labels, split, classes = read_labels(args.labels)

    def dataset(part: str) -> DNeRVDataset | None:
        names = [n for n in labels if split[n] == part]
        if not names:
            return None
        return DNeRVDataset(args.dnerv, videos=names, clip_frames=args.clip_frames,
                            device=device, labels=labels, transform=Resize(args.input_size))

    train_set, val_set = dataset("train"), dataset("val")
    if train_set is None or len(train_set) == 0:
        raise SystemExit("no training clips: label some videos as train")
    has_val = val_set is not None and len(val_set) > 0
    print(f"{len(classes)} classes, {len(train_set)} training clips"
          + (f", {len(val_set)} validation clips" if has_val else ", no validation split"))

    def loader(ds: DNeRVDataset, shuffle: bool) -> DataLoader:
        # persistent workers rebuild the model from the file once, not once per epoch
        return DataLoader(ds, batch_size=args.batch_size, shuffle=shuffle, num_workers=workers,
                          persistent_workers=workers > 0,
                          generator=torch.Generator().manual_seed(args.seed))

    train_loader = loader(train_set, True)
    val_loader = loader(val_set, False) if has_val else None

    model = classifier(len(classes)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    metrics: dict[str, float] = {}
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        loss, acc = run_epoch(model, train_loader, device, f"epoch {epoch}", optimizer,
                              args.steps, args.quiet)
        metrics = {"train_loss": loss, "train_acc": acc}
        line = f"epoch {epoch}/{args.epochs}: train loss {loss:.3f} acc {acc:.2f}"
        if val_loader is not None:
            loss, acc = run_epoch(model, val_loader, device, "val", None, args.steps, args.quiet)
            metrics.update(val_loss=loss, val_acc=acc)
            line += f" | val loss {loss:.3f} acc {acc:.2f}"
        print(f"{line} ({time.perf_counter() - start:.1f} s with decoding)")
    return metrics


if __name__ == "__main__":
    main()
