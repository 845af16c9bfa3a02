"""Coverage-guided fuzzing of the .dnerv parsers with atheris (libFuzzer for Python).

    python benches/fuzz_container.py --seconds 600 [--corpus DIR] [--out docs/results/fuzz_container.json]

Four targets, chosen by an input's first byte: the whole container (the CRC is appended by
the target, so that mutations reach the sections behind it), the header JSON and its
validation, the weights section of the small test network, and one keyframe under each
keyframe codec. Each input must end in a :class:`~dnerv_fast.errors.CodecError` or parse;
any other exception is a finding: libFuzzer stops and writes the input as ``crash-*``.
The seed corpus (written to ``--corpus`` when it is empty) holds valid files and damaged
ones from tests/fuzz_bitstream.py. Figures (inputs run, outcomes per target, crashes) are
written as JSON to ``--out`` every few seconds, with the command, date, machine and commit.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

with atheris.instrument_imports(include=["dnerv_fast"]):
    from dnerv_fast.codec.bitstream import FORMAT_VERSION, _parse_json, from_bytes, to_bytes
    from dnerv_fast.codec.header import parse_header
    from dnerv_fast.codec.memory import check_decode_memory, decode_memory
    from dnerv_fast.codec.weights import decode_layout, model_shapes, read_layout
    from dnerv_fast.errors import CodecError
    from dnerv_fast.media.keyframes import CODECS, decode_keyframe

TARGETS = ("container", "header", "weights", "keyframe")
BUDGET = 1 << 30   # bytes a fuzzed file may ask to decode: bounds each input's memory


def _check(raw: dict, keyframes: int):
    head = parse_header(raw, version=FORMAT_VERSION, keyframes=keyframes, clips_per_pass=8)
    check_decode_memory(decode_memory(head, 0, 8), BUDGET, "input")
    return head


class Target:
    """The fuzz target and its tally."""

    def __init__(self, out: Path | None, command: str) -> None:
        from hostile_files import SMALL, small_container
        self.base = small_container()
        self.shapes = model_shapes(SMALL, self.base.header["parameters"])
        self.out, self.command = out, command
        self.tally = {t: {"inputs": 0, "parsed": 0, "refused": 0} for t in TARGETS}
        self.started = self.written = time.time()

    def __call__(self, data: bytes) -> None:
        if not data:
            return
        target, body = TARGETS[data[0] % len(TARGETS)], data[1:]
        self.tally[target]["inputs"] += 1
        try:
            if target == "container":
                c = from_bytes(body + zlib.crc32(body).to_bytes(4, "little"), "input")
                head = _check(c.header, len(c.keyframes))
                decode_layout(c.weights, read_layout(c.weights, model_shapes(
                    head.config, head.parameters), head.bits))
            elif target == "header":
                _check(_parse_json(body, "input"), len(self.base.keyframes))
            elif target == "weights":
                decode_layout(body, read_layout(body, self.shapes, 6))
            else:
                codec = list(CODECS)[body[0] % len(CODECS)] if body else "png"
                decode_keyframe(body[1:], codec, (36, 40))
            self.tally[target]["parsed"] += 1
        except CodecError:
            self.tally[target]["refused"] += 1
        if time.time() - self.written > 5:
            self.write()

    def write(self) -> None:
        self.written = time.time()
        if self.out is None:
            return
        figures = {"command": self.command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "machine": _machine(), "commit": _commit(),
                   "seconds": round(self.written - self.started, 1),
                   "inputs": sum(t["inputs"] for t in self.tally.values()),
                   "internal_errors": 0, "targets": self.tally}
        self.out.write_text(json.dumps(figures, indent=1) + "\n")


def _machine() -> dict:
    import torch
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def seed_corpus(folder: Path, count: int = 60) -> None:
    """Valid and damaged inputs for every target, each prefixed with its target byte."""
    from fuzz_bitstream import make_cases
    from hostile_files import small_container
    base = small_container()
    whole = to_bytes(base)
    seeds = [bytes([0]) + whole[:-4], bytes([1]) + json.dumps(base.header).encode(),
             bytes([2]) + base.weights]
    seeds += [bytes([3, list(CODECS).index("webp")]) + k for k in base.keyframes[:2]]
    seeds += [bytes([0]) + data[:-4] for _, data in make_cases(0, count)]
    for i, seed in enumerate(seeds):
        (folder / f"seed-{i:03d}").write_bytes(seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--corpus", type=Path,
                        default=Path(tempfile.gettempdir()) / "dnerv-fuzz-corpus",
                        help="corpus folder: seeded when empty, grown by the fuzzer")
    parser.add_argument("--out", type=Path, default=None, help="write the figures here (JSON)")
    args, rest = parser.parse_known_args()
    args.corpus.mkdir(parents=True, exist_ok=True)
    if not any(args.corpus.iterdir()):
        seed_corpus(args.corpus)
    command = " ".join(["python", "benches/fuzz_container.py", *sys.argv[1:]])
    target = Target(args.out, command)
    import torch
    torch.set_num_threads(1)
    atheris.Setup([sys.argv[0], f"-max_total_time={args.seconds}", "-rss_limit_mb=4096",
                   "-timeout=20", *rest, str(args.corpus)], target)
    import atexit
    atexit.register(target.write)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
