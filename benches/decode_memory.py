"""Peak memory of streaming decode: a video and one 8x as long, same frame size and model.

``python benches/decode_memory.py [--frames 64] [--height 240 --width 320] [--out
docs/results/decode_memory.json]`` writes two .dnerv files (a model and keyframes, not
trained: decode memory does not depend on what the weights learnt), decodes each in a fresh
``dnerv-fast decode FILE -o OUT.yuv`` process, and records each process's peak resident
set (``ru_maxrss`` from ``wait4``) with the command, date, machine and commit. Decode
writes clip group by clip group, so the two peaks should be within 10% of each other.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from dnerv_fast.codec.bitstream import Container, write_container
from dnerv_fast.codec.pipeline import _entries, _header
from dnerv_fast.codec.weights import dequantize_state_dict, pack_weights, quantize_state_dict
from dnerv_fast.clips.data import keyframe_images
from dnerv_fast.configs import get_config
from dnerv_fast.media.keyframes import code_keyframe
from dnerv_fast.media.synthetic import moving_pattern
from dnerv_fast.model.dnerv import DNeRV


def write_file(path: Path, frames: int, height: int, width: int, size: str) -> None:
    """An untrained model's .dnerv file for one generated video of ``frames`` frames."""
    config = get_config(size)
    video = moving_pattern(frames, height, width, name="bench")
    torch.manual_seed(0)
    model = DNeRV(config)
    qsd = quantize_state_dict(model.state_dict(), 8, 0.0)
    model.load_state_dict(dequantize_state_dict(qsd))
    keys = [code_keyframe(f, "webp", 85) for f in keyframe_images(video, config)]
    header = _header(config, _entries([video]), "webp", 85, 8, 0.0,
                     sum(p.numel() for p in model.parameters()), None)
    write_container(path, Container(header, pack_weights(qsd), keys))


def peak_rss(command: list[str]) -> tuple[int, float]:
    """(peak RSS in bytes, seconds) of a child process running ``command``."""
    start = datetime.datetime.now()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed with status {proc.returncode}")
    return usage.ru_maxrss * 1024, (datetime.datetime.now() - start).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--out", default="docs/results/decode_memory.json")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for frames in (args.frames, 8 * args.frames):
            path = Path(tmp) / f"v{frames}.dnerv"
            write_file(path, frames, args.height, args.width, args.size)
            out = Path(tmp) / f"v{frames}.yuv"
            command = [sys.executable, "-m", "dnerv_fast.cli", "decode", str(path), "-o",
                       str(out), "-q", "--device", "cpu"]
            rss, seconds = peak_rss(command)
            runs.append({"frames": frames, "peak_rss_mib": round(rss / 2**20, 1),
                         "seconds": round(seconds, 1), "output_bytes": out.stat().st_size})
            print(f"{frames} frames: peak RSS {rss / 2**20:.1f} MiB in {seconds:.1f} s")
    ratio = runs[1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    result = {
        "command": "python benches/decode_memory.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "torch": torch.__version__},
        "commit": commit.stdout.strip(),
        "frame_size": f"{args.width}x{args.height}", "model": args.size,
        "backend": os.environ.get("DNERV_FAST_BACKEND", "auto"),
        "decode": "dnerv-fast decode FILE -o OUT.yuv --device cpu (8-bit RGB source: "
                  "yuv444p output), one fresh process each; ru_maxrss",
        "runs": runs, "long_over_short": round(ratio, 3),
        "within_10_percent": abs(ratio - 1) <= 0.10,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"8x longer / shorter peak RSS: {ratio:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
