"""Seeded fuzzing of .dnerv decoding: truncations, bit flips with the checksum recomputed,
and hostile header values.

Run as a script (``python tests/fuzz_bitstream.py --seed S --cases N``) it decodes every case
under an address-space limit, so that an allocation beyond the bound fails instead of
swapping, and prints one JSON summary: the outcome of each case (``error``: a CodecError;
``ok``: a valid decode; ``bug``: any other exception; ``slow``: over the time limit) and the
peak memory. tests/test_fuzz.py runs it and checks the summary.
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import resource
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from hostile_files import small_container  # noqa: E402

from dnerv_fast.codec.bitstream import FORMAT_VERSION, Container, to_bytes  # noqa: E402
from dnerv_fast.codec.header import keyframe_count, parse_header  # noqa: E402
from dnerv_fast.codec.weights import model_shapes, read_layout  # noqa: E402
from dnerv_fast.errors import CodecError  # noqa: E402
from dnerv_fast.codec.pipeline import load  # noqa: E402

ADDRESS_LIMIT = 8 << 30   # about 5 GiB of address space is taken by torch and its threads
CASE_SECONDS = 5.0
HOSTILE_VALUES: list[Any] = [
    None, True, False, -1, 0, 1, 3, 2**31, 2**63, 10**30, -10**30, 1e308, -1e308, 0.5, 1e-300,
    "", "x" * 5000, "../../escape", "/tmp/abs", "a/b", "..", "CON", "\u202e", [], {}, [1] * 500,
    {"kind": "boxes", "count": 10**9, "size": 10**9, "seed": -1}, [[[[[]]]]],
    # lone surrogates, terminal escapes and bidi overrides, floats for integers
    "\ud800x", "\x1b]8;;http://evil\x1b\\x\x1b]8;;\x1b\\", "\x1b[2J\u202egpj.exe", 2.0, 36.0, 4.0,
]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


def _set(root: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        root = root[key]
    if value is ...:
        del root[path[-1]]
    else:
        root[path[-1]] = value


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _section_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of the prelude + table and of each section payload."""
    (count,) = struct.unpack_from("<H", data, 10)
    pos, spans = 12 + 12 * count, [(0, 12 + 12 * count)]
    for i in range(count):
        _, n = struct.unpack_from("<4sQ", data, 12 + 12 * i)
        spans.append((pos, pos + n))
        pos += n
    return spans


def make_cases(seed: int, count: int) -> list[tuple[str, bytes]]:
    """``count`` hostile files: (description, bytes)."""
    rng = random.Random(seed)
    base = small_container()
    data = to_bytes(base)
    spans = _section_spans(data)
    cases: list[tuple[str, bytes]] = []
    kinds: list[Callable[[], tuple[str, bytes]]] = []

    def truncation() -> tuple[str, bytes]:
        k = rng.randrange(len(data))
        return f"truncation: to {k} bytes", data[:k]

    def flips() -> tuple[str, bytes]:
        start, end = rng.choice(spans)
        body = bytearray(data[:-4])
        where = []
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(start, min(end, len(body)))
            body[i] ^= 1 << rng.randrange(8)
            where.append(i)
        return f"bit flips: at {where}, checksum recomputed", _recrc(bytes(body))

    def header_value() -> tuple[str, bytes]:
        c = copy.deepcopy(base)
        path = rng.choice(_paths(c.header))
        value = rng.choice(HOSTILE_VALUES + [...])
        _set(c.header, path, value)
        return f"header value: {path} = {ascii(value)[:40]}", to_bytes(c)

    def header_text() -> tuple[str, bytes]:
        depth = rng.choice([1, 100, 10_000, 200_000])
        text = rng.choice([
            "[" * depth + "]" * depth,
            '{"a":' * depth + "1" + "}" * depth,
            json.dumps(base.header).replace("25.0", "NaN"),
            json.dumps(base.header).replace("25.0", "1e999"),
            json.dumps(base.header)[:-1] + ', "bits": 8}',
            "9" * 5000,
            "\udcff",
        ])
        head = text.encode("utf-8", "surrogateescape")
        payloads = [head, base.weights, data[spans[3][0]:spans[3][1]]]
        table = b"".join(struct.pack("<4sQ", t, len(p)) for t, p in
                         zip((b"HEAD", b"WGTS", b"KEYF"), payloads))
        body = data[:12] + table + b"".join(payloads)
        return f"header text: {len(head)} bytes ({text[:20]!r}...)", _recrc(body)

    def structure() -> tuple[str, bytes]:
        c: Container = copy.deepcopy(base)
        choice = rng.randrange(6)
        if choice == 0:   # one more video, sharing keyframes it does not own
            c.header["videos"].append(dict(c.header["videos"][0]))
        elif choice == 1:
            c.keyframes = c.keyframes[:-1]
        elif choice == 2:
            c.keyframes[rng.randrange(len(c.keyframes))] = bytes(rng.randrange(256) for _ in range(64))
        elif choice == 3:
            c.weights = c.weights[:rng.randrange(len(c.weights))]
        elif choice == 4:   # the weights' rANS stream emptied
            c.weights = c.weights[:_stream_start(base)] + struct.pack("<I", 0)
        else:   # a required field removed
            target = rng.choice([c.header, c.header["config"], c.header["videos"][0]])
            target.pop(rng.choice(sorted(target)))
        return f"structure: change {choice}", to_bytes(c)

    def heavy() -> tuple[str, bytes]:
        """Content within the format's limits that needs more memory than the budget: the
        decoder must refuse it before allocating."""
        c: Container = copy.deepcopy(base)
        choice = rng.randrange(4)
        if choice == 0:
            c.header["videos"][0].update(height=8192, width=8192, frames=80)
        elif choice == 1:
            c.header["config"]["patch_size"] = [4096, 4096]
        elif choice == 2:
            c.header["config"]["patch_size"] = [128, 4096]
        else:
            c.header["parameters"] = int(0.93 * 2**28)
        clip_len = c.header["config"]["clip_len"]
        needed = sum(keyframe_count(v["frames"], clip_len) for v in c.header["videos"])
        c.keyframes = (c.keyframes * needed)[:needed]
        return f"heavy content: case {choice}", to_bytes(c)

    kinds = [truncation, flips, header_value, header_value, header_text, structure, heavy]
    for _ in range(count):
        cases.append(rng.choice(kinds)())
    return cases


def _stream_start(container: Container) -> int:
    """Offset of the rANS stream's word count in the weights section."""
    head = parse_header(container.header, version=FORMAT_VERSION,
                        keyframes=len(container.keyframes), clips_per_pass=8)
    return read_layout(container.weights, model_shapes(head.config, head.parameters),
                       head.bits).stream_start


# The memory budget of every decode (codec/memory.py): the same on every machine, so that a
# case is refused or decoded alike everywhere; the valid file needs a few MB.
DECODE_BUDGET = "512M"


def decode_all(path: Path) -> None:
    """Load the file and render its first video (its keyframes decode then)."""
    load(path, max_memory=DECODE_BUDGET).render(0)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(seed: int, count: int) -> dict[str, Any]:
    """Decode every case; the summary's ``growth_mib`` is how far the peak memory rose above
    that of decoding the valid file, and ``largest`` the case that raised it most."""
    outcomes: dict[str, int] = {"error": 0, "ok": 0, "bug": 0, "slow": 0}
    families: dict[str, dict[str, int]] = {}
    problems = []
    largest = (0.0, "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.dnerv"
        path.write_bytes(to_bytes(small_container()))
        decode_all(path)
        baseline = _peak_mib()
        for what, data in make_cases(seed, count):
            before = _peak_mib()
            path.write_bytes(data)
            start = time.perf_counter()
            try:
                decode_all(path)
                outcome = "ok"
            except CodecError as e:
                outcome = "error" if "\n" not in str(e) else "bug"
                if outcome == "bug":
                    problems.append(f"{what}: multi-line message {str(e)[:200]!r}")
            except BaseException as e:  # noqa: BLE001 - that is what the fuzz looks for
                outcome = "bug"
                problems.append(f"{what}: {type(e).__name__}: {str(e)[:200]}")
            if time.perf_counter() - start > CASE_SECONDS:
                outcome = "slow"
                problems.append(f"{what}: took {time.perf_counter() - start:.1f} s")
            outcomes[outcome] += 1
            family = families.setdefault(what.split(":")[0], {"cases": 0})
            family["cases"] += 1
            family[outcome] = family.get(outcome, 0) + 1
            largest = max(largest, (_peak_mib() - before, what))
    return {"seed": seed, "cases": count, "outcomes": outcomes, "families": families,
            "problems": problems,
            "baseline_mib": baseline, "growth_mib": _peak_mib() - baseline,
            "largest": {"mib": largest[0], "case": largest[1]}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=300)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT, ADDRESS_LIMIT))
    torch.set_num_threads(1)   # tiny maps: threads only add start-up and contention
    print(json.dumps(run(args.seed, args.cases)))


if __name__ == "__main__":
    main()
