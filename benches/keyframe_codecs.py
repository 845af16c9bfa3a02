"""Keyframe codec study: RGB PSNR against bytes for every keyframe codec offered, on real frames.

Codes the frames that an encode would store as keyframes (every ``clip_len``-th frame, see
:func:`dnerv_fast.clips.data.keyframe_images`; at most ``--frames`` of them per video, evenly
spaced) with each codec of :data:`dnerv_fast.media.keyframes.CODECS` over a sweep of its
quality setting, through the same ``encode_keyframe`` an encode calls, so the bytes are the
bytes a ``.dnerv`` file would hold. Reports, per video and codec:

- the curve (bits per pixel, mean RGB PSNR over the frames, encode and decode CPU seconds
  per frame), the lossless PNG as one point;
- bytes at equal quality: each curve's bpp interpolated (log bpp linear in PSNR) at the
  PSNR targets, and the Bjontegaard rate difference against ``--against`` over the PSNR
  range both curves cover.

Writes ``keyframes.json`` (every point, for tools), ``keyframes.md`` (the tables) and
``keyframes.png`` (one panel per video) under ``--out``.

    python benches/keyframe_codecs.py carphone.mp4 bikes.mp4 vtest.avi --max-frames 300 \\
        --out keyframe-study
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from dnerv_fast.atomic import atomic_dir
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.errors import KeyframeCodecError
from dnerv_fast.media.keyframes import CODECS, encode_keyframe
from dnerv_fast.media.video_io import read_video
from dnerv_fast.schedule import keyframe_indices

# Qualities swept, worst to best, in each codec's own scale.
SWEEP = {
    "jpeg": [30, 50, 70, 80, 90, 95, 98],
    "webp": [30, 50, 70, 80, 90, 95, 100],
    "hevc": [40, 34, 28, 22, 16, 10, 4],
    "av1": [55, 45, 35, 28, 20, 12, 4],
    "png": [0],
}
TARGETS = (32.0, 36.0, 40.0)  # PSNR (dB) at which bytes are compared


def rgb_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def sample(frames: list[int], count: int) -> list[int]:
    """At most ``count`` of ``frames``, evenly spaced, first and last included."""
    if len(frames) <= count:
        return frames
    return [frames[round(i * (len(frames) - 1) / (count - 1))] for i in range(count)]


def code_point(images: list[np.ndarray], codec: str, quality: int) -> dict:
    """Code ``images`` at one quality: bytes, bpp, mean PSNR and CPU time per frame."""
    nbytes, psnrs, encode_s, decode_s = 0, [], 0.0, 0.0
    for image in images:
        start = time.process_time()
        data, decoded = encode_keyframe(image, codec, quality)   # encodes, then decodes
        total = time.process_time() - start
        start = time.process_time()
        CODECS[codec].decode(data, image.shape[:2])
        decode_s += time.process_time() - start
        encode_s += total
        nbytes += len(data)
        psnrs.append(rgb_psnr(image, decoded))
    pixels = sum(i.shape[0] * i.shape[1] for i in images)
    lossless = all(math.isinf(p) for p in psnrs)
    return {"codec": codec, "quality": quality, "bytes": nbytes, "bpp": 8 * nbytes / pixels,
            "psnr": None if lossless else float(np.mean([p for p in psnrs if math.isfinite(p)])),
            "encode_s_per_frame": (encode_s - decode_s) / len(images),
            "decode_s_per_frame": decode_s / len(images)}


def _curve(points: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(PSNR ascending, log bpp) of the lossy points, keeping the envelope that rises."""
    lossy = sorted((p["psnr"], math.log(p["bpp"])) for p in points if p["psnr"] is not None)
    kept: list[tuple[float, float]] = []
    for q, r in lossy:
        if not kept or (q > kept[-1][0] and r > kept[-1][1]):
            kept.append((q, r))
    return np.array([k[0] for k in kept]), np.array([k[1] for k in kept])


def bpp_at(points: list[dict], target: float) -> float | None:
    """bpp at PSNR ``target`` (log bpp interpolated linearly), None outside the curve."""
    q, r = _curve(points)
    if len(q) < 2 or not q[0] <= target <= q[-1]:
        return None
    return float(math.exp(np.interp(target, q, r)))


def bd_rate(points: list[dict], anchor: list[dict]) -> float | None:
    """Mean bitrate difference (%) of ``points`` against ``anchor`` at equal PSNR, over the
    PSNR range both cover (piecewise-linear log rate, integrated on a fine grid)."""
    q1, r1 = _curve(points)
    q0, r0 = _curve(anchor)
    if len(q1) < 2 or len(q0) < 2:
        return None
    lo, hi = max(q1[0], q0[0]), min(q1[-1], q0[-1])
    if hi - lo < 0.5:
        return None
    grid = np.linspace(lo, hi, 200)
    diff = np.mean(np.interp(grid, q1, r1) - np.interp(grid, q0, r0))
    return float(100 * (math.exp(diff) - 1))


def study(paths: list[str], max_frames: int | None, frames: int, clip_len: int) -> dict:
    videos = []
    for path in paths:
        video = read_video(path, max_frames=max_frames)
        chosen = sample(keyframe_indices(video.num_frames, clip_len), frames)
        images = [video.frames[k] for k in chosen]
        points = []
        for codec, qualities in SWEEP.items():
            for quality in qualities:
                try:
                    points.append(code_point(images, codec, quality))
                except KeyframeCodecError as e:      # a frame too small for the codec
                    print(f"{video.name}: {codec} skipped: {e}")
                    break
            print(f"{video.name} {video.width}x{video.height}: {codec} done", flush=True)
        videos.append({"name": video.name, "width": video.width, "height": video.height,
                       "keyframes": chosen, "points": points})
    return {"targets_db": list(TARGETS), "clip_len": clip_len, "videos": videos}


def summarise(result: dict, against: str) -> tuple[list[dict], str]:
    """Per video and codec: bpp at each target and BD-rate; and the Markdown tables."""
    rows, lines = [], []
    for v in result["videos"]:
        by_codec: dict[str, list[dict]] = {}
        for p in v["points"]:
            by_codec.setdefault(p["codec"], []).append(p)
        lines += [f"### {v['name']} ({v['width']}x{v['height']}, {len(v['keyframes'])} keyframes)",
                  "", "| codec | " + " | ".join(f"bpp at {t:g} dB" for t in TARGETS)
                  + f" | BD-rate vs {against} | encode ms/frame | decode ms/frame |",
                  "|---|" + "---|" * (len(TARGETS) + 3)]
        for codec, points in by_codec.items():
            at = [bpp_at(points, t) for t in TARGETS]
            bd = None if codec == against else bd_rate(points, by_codec.get(against, []))
            enc = 1e3 * np.mean([p["encode_s_per_frame"] for p in points])
            dec = 1e3 * np.mean([p["decode_s_per_frame"] for p in points])
            rows.append({"video": v["name"], "codec": codec, "bpp_at": at, "bd_rate_pct": bd,
                         "encode_ms_per_frame": enc, "decode_ms_per_frame": dec})
            if codec == "png":
                cells = [f"{points[0]['bpp']:.2f} (lossless)"] + ["" for _ in TARGETS[1:]]
            else:
                cells = ["-" if b is None else f"{b:.3f}" for b in at]
            bd_cell = "(anchor)" if codec == against else ("-" if bd is None else f"{bd:+.1f}%")
            lines.append(f"| {codec} | " + " | ".join(cells) + f" | {bd_cell} | {enc:.0f} | {dec:.0f} |")
        lines.append("")
    return rows, "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos = result["videos"]
    fig, axes = plt.subplots(1, len(videos), figsize=(5 * len(videos), 4), squeeze=False)
    for ax, v in zip(axes[0], videos):
        for codec in SWEEP:
            pts = [p for p in v["points"] if p["codec"] == codec and p["psnr"] is not None]
            if pts:
                ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "o-", label=codec)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (keyframes)")
        ax.set_ylabel("RGB PSNR (dB)")
        ax.set_title(f"{v['name']} {v['width']}x{v['height']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", help="video files or frame folders")
    parser.add_argument("--out", type=Path, required=True, help="folder for JSON, tables, plot")
    parser.add_argument("--max-frames", type=int, help="read at most this many frames a video")
    parser.add_argument("--frames", type=int, default=12,
                        help="keyframes coded per video, evenly spaced (default 12)")
    parser.add_argument("--against", default="webp", choices=sorted(SWEEP),
                        help="the anchor of the BD-rate column (default webp)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--record", metavar="NAME",
                        help="also write the figures to docs/results/NAME.json")
    args = parser.parse_args(argv)
    clip_len = DNeRV.from_config("tiny").config.clip_len    # every named size uses 8
    result = study(args.videos, args.max_frames, args.frames, clip_len)
    rows, table = summarise(result, args.against)
    result["summary"] = rows
    with atomic_dir(args.out, args.overwrite) as tmp:
        (tmp / "keyframes.json").write_text(json.dumps(result, indent=1))
        (tmp / "keyframes.md").write_text(table)
        plot(result, tmp / "keyframes.png")
    if args.record:
        from results import command_line, record    # benches/results.py (benches/ is on sys.path)
        record(args.record, {"settings": {"max_frames": args.max_frames, "keyframes": args.frames,
                                          "against": args.against},
                             "targets_db": result["targets_db"],
                             "videos": [{k: v[k] for k in ("name", "width", "height")}
                                        for v in result["videos"]],
                             "summary": rows}, command_line("benches/keyframe_codecs.py", argv),
               plot=args.out / "keyframes.png")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
