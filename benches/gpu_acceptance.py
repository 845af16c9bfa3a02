"""One-shot GPU acceptance run: build, parity, benchmarks, profile -> one JSON + one Markdown.

``python benches/gpu_acceptance.py [--out DIR]`` (default ``acceptance/``). On a CUDA machine it

1. builds / loads every backend (the CUDA extension compiles here, Triton imports),
2. runs the GPU parity tests (tests/test_ops_parity.py, test_ops_cuda.py, test_ops_triton.py,
   test_model_backends.py, test_ops_compile.py),
3. times the fused ops against eager and ``torch.compile`` at the 128x160 and 256x320 stages
   (forward, and forward + backward at the largest stage), next to a measured copy bandwidth,
4. times whole-model decoding (eager fp32, torch.compile, each fused backend eager and
   compiled) in fp32 and bf16,
5. times the per-call dispatch overhead and runs ``dnerv-fast profile`` for uvg-M,

and writes ``acceptance.json`` and ``acceptance.md`` with the issue-12 targets checked (each
fused op >= 3x eager and >= 1.5x torch.compile; warp / tail >= 60% of copy bandwidth; decode
>= 2x eager fp32 and >= 1.2x torch.compile at the same dtype). Aimed at < 8 min on an H100.
Without CUDA every step that needs it is recorded as skipped (not failed) and the rest runs,
so the script is checked end to end on CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()
OP_STAGES = "128x160 or 256x320"  # the stages the op targets are stated for


class Skipped(Exception):
    """A step that cannot run here (the reason is its message)."""


def _pytest(args: list[str], timeout: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"pytest exited {proc.returncode}: " + "\n".join(tail[-25:]))
    return {"summary": tail[-1] if tail else "", "seconds": round(time.time() - t0, 1)}


def _bench_at(out_dir: Path, bench: str, dtype: str, timeout: int,
              env: dict[str, str] | None = None) -> tuple[dict[str, Any], Path]:
    """Run one benchmark file with DNERV_BENCH_DTYPE=dtype; (pytest summary, its JSON file)."""
    path = out_dir / f"{Path(bench).stem.removeprefix('test_')}_{dtype}.json"
    run = _pytest([bench, "--benchmark-enable", f"--benchmark-json={path}"], timeout=timeout,
                  env={"DNERV_BENCH_DTYPE": dtype, **(env or {})})
    return run, path


def _medians_ms(bench_json: Path) -> dict[str, dict[str, float]]:
    """group -> {test name: median ms} from a pytest-benchmark JSON file."""
    groups: dict[str, dict[str, float]] = {}
    for b in json.loads(bench_json.read_text())["benchmarks"]:
        groups.setdefault(b["group"], {})[b["name"]] = b["stats"]["median"] * 1e3
    return groups


def step_environment(_: Path) -> dict[str, Any]:
    import triton  # noqa: F401 - version only
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
            "triton": getattr(sys.modules.get("triton"), "__version__", None)}
    if HAS_CUDA:
        info["device"] = torch.cuda.get_device_name()
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    return info


def step_build(_: Path) -> dict[str, Any]:
    from dnerv_fast import ops
    out = {}
    for name in ops.BACKENDS:
        t0 = time.time()
        try:
            ops.load_backend(name)
            out[name] = {"status": "ok", "seconds": round(time.time() - t0, 1)}
        except ops.BackendUnavailable as exc:
            out[name] = {"status": "unavailable", "reason": str(exc)[:500]}
    device = "cuda" if HAS_CUDA else "cpu"
    out["auto"] = ops.resolve(device)[0]
    if HAS_CUDA and not all(out[n]["status"] == "ok" for n in ("cuda", "triton")):
        raise RuntimeError(f"a GPU backend does not build: {out}")
    return out


def step_parity(_: Path) -> dict[str, Any]:
    if not HAS_CUDA:
        raise Skipped("needs CUDA (on CPU the same tests run in CI under the interpreter)")
    return _pytest(["tests/test_ops_parity.py", "tests/test_ops_cuda.py", "tests/test_ops_triton.py",
                    "tests/test_model_backends.py", "tests/test_ops_compile.py", "-x"], timeout=900)


def _copy_bandwidth_gbs() -> float:
    """Device-to-device copy of 256 MiB, read + write bytes per second."""
    src = torch.empty(64 * 2**20, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    return 2 * src.numel() * 4 * 20 / (start.elapsed_time(end) / 1e3) / 1e9


def _op_bytes() -> dict[str, int]:
    """Bytes each fused op must at least read and write, per stage label (benchmark ids)."""
    sys.path.insert(0, str(ROOT / "benches"))
    from test_bench_ops import CASES

    from dnerv_fast.ops import reference
    sizes = {}
    for op, cases in CASES.items():
        for stage, make in cases:
            args = make()
            out = getattr(reference, op)(*args)
            sizes[f"{op}-{stage}"] = sum(a.numel() * a.element_size() for a in [*args, out]
                                         if isinstance(a, torch.Tensor))
    return sizes


def step_op_benchmarks(out_dir: Path) -> dict[str, Any]:
    if not HAS_CUDA:
        raise Skipped("needs CUDA")
    path = out_dir / "bench_ops.json"
    run = _pytest(["benches/test_bench_ops.py", "--benchmark-enable", f"--benchmark-json={path}",
                   "-k", OP_STAGES], timeout=900)
    copy_gbs = _copy_bandwidth_gbs()
    sizes = _op_bytes()
    rows = []
    for group, medians in _medians_ms(path).items():
        impl = {name.rsplit("[", 1)[1].rstrip("]").split("-")[-1]: ms for name, ms in medians.items()}
        stage_id = next(iter(medians)).split("[", 1)[1].rsplit("-", 1)[0]
        row = {"group": group, "ms": impl}
        for backend in ("cuda", "triton"):
            if backend in impl:
                row[f"{backend}_vs_eager"] = impl["eager"] / impl[backend]
                if "compile" in impl:
                    row[f"{backend}_vs_compile"] = impl["compile"] / impl[backend]
                if stage_id in sizes and "fwd+bwd" not in group:
                    row[f"{backend}_bandwidth_share"] = sizes[stage_id] / (impl[backend] / 1e3) / 1e9 / copy_gbs
        rows.append(row)
    return {**run, "copy_GBps": copy_gbs, "rows": rows}


def step_model_benchmarks(out_dir: Path) -> dict[str, Any]:
    if not HAS_CUDA:
        raise Skipped("needs CUDA")
    result = {}
    for dtype in ("fp32", "bf16"):
        run, path = _bench_at(out_dir, "benches/test_bench_model.py", dtype, timeout=900)
        medians = next(iter(_medians_ms(path).values()))
        result[dtype] = {**run, "ms": {name.replace("test_", ""): ms for name, ms in medians.items()}}
    eager32 = result["fp32"]["ms"]["eager_reference"]
    for r in result.values():
        compiled = r["ms"]["compiled_reference"]
        r["fused"] = {name: {"vs_eager_fp32": eager32 / ms, "vs_compile": compiled / ms}
                      for name, ms in r["ms"].items() if "fused_backend" in name}
    return result


def step_train_benchmarks(out_dir: Path) -> dict[str, Any]:
    """Training steps (benches/test_bench_train.py), fp32 and bf16, with the projected time
    of a 1600-epoch UVG-M encode on this one GPU (the paper's run, batch 8 per step)."""
    if not HAS_CUDA:
        raise Skipped("needs CUDA")
    result = {}
    for dtype in ("fp32", "bf16"):
        run, path = _bench_at(out_dir, "benches/test_bench_train.py", dtype, timeout=1800,
                              env={"DNERV_BENCH_TRAIN_SIZES": "tiny,uvg-XS,uvg-M"})
        rows = {b["name"].replace("test_", ""): b["extra_info"]
                for b in json.loads(path.read_text())["benchmarks"]}
        hours = next(info["uvg_1600_epoch_hours"] for name, info in rows.items()
                     if "uvg-M" in name)
        print(f"[train_benchmarks] {dtype}: projected 1600-epoch UVG-M encode on one GPU: "
              f"{hours:.1f} h", flush=True)
        result[dtype] = {**run, "rows": rows, "uvg_m_1600_epoch_hours": hours}
    return result


def step_dispatch(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "bench_dispatch.json"
    run = _pytest(["benches/test_bench_dispatch.py", "--benchmark-enable", f"--benchmark-json={path}"],
                  timeout=300)
    return {**run, "us": {group: {name: ms * 1e3 for name, ms in medians.items()}
                          for group, medians in _medians_ms(path).items()}}


def step_profile(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "profile_uvg-M.json"
    cmd = [sys.executable, "-m", "dnerv_fast.cli", "profile", "--size", "uvg-M", "--json", str(path), "--overwrite"]
    if not HAS_CUDA:  # the command itself, end to end, at a size a CPU finishes quickly
        cmd += ["--device", "cpu", "--frame-size", "none", "--warmup", "1", "--repeats", "2", "--no-breakdown"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return {"output": proc.stdout.strip().splitlines()[-12:], "result": json.loads(path.read_text())}


STEPS: list[tuple[str, Callable[[Path], dict[str, Any]]]] = [
    ("environment", step_environment), ("build", step_build), ("parity", step_parity),
    ("op_benchmarks", step_op_benchmarks), ("model_benchmarks", step_model_benchmarks),
    ("train_benchmarks", step_train_benchmarks), ("dispatch", step_dispatch),
    ("profile", step_profile),
]


def targets(results: dict[str, Any]) -> list[tuple[str, bool]]:
    """(target, met) for each issue-12 target the measured steps cover."""
    checks = []
    ops_step = results.get("op_benchmarks", {})
    for row in ops_step.get("rows", []):
        for backend in ("cuda", "triton"):
            if f"{backend}_vs_eager" in row:
                checks.append((f"{row['group']} {backend} >= 3x eager", row[f"{backend}_vs_eager"] >= 3))
            if f"{backend}_vs_compile" in row:
                checks.append((f"{row['group']} {backend} >= 1.5x compile", row[f"{backend}_vs_compile"] >= 1.5))
            share = row.get(f"{backend}_bandwidth_share")
            if share is not None and not row["group"].startswith("saf"):
                checks.append((f"{row['group']} {backend} >= 60% copy bandwidth", share >= 0.6))
    for dtype, r in results.get("model_benchmarks", {}).items():
        if not isinstance(r, dict) or "fused" not in r:
            continue
        for name, f in r["fused"].items():
            checks.append((f"decode {dtype} {name} >= 2x eager fp32", f["vs_eager_fp32"] >= 2))
            checks.append((f"decode {dtype} {name} >= 1.2x compile", f["vs_compile"] >= 1.2))
    return checks


def markdown(results: dict[str, Any], status: dict[str, dict[str, Any]]) -> str:
    lines = ["# dnerv_fast GPU acceptance", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    for name, s in status.items():
        lines.append(f"| {name} | {s['status']} | {s['seconds']:.0f} | {s.get('note', '')[:160]} |")
    env = results.get("environment", {})
    lines += ["", f"Device: {env.get('device', 'none (CPU)')}; torch {env.get('torch')}, triton {env.get('triton')}"]
    rows = results.get("op_benchmarks", {}).get("rows", [])
    if rows:
        lines += ["", f"## Fused ops (median ms; copy bandwidth {results['op_benchmarks']['copy_GBps']:.0f} GB/s)",
                  "", "| group | eager | compile | cuda | triton | cuda x eager | triton x eager | triton x compile |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ms = r["ms"]
            cells = [f"{ms[k]:.3f}" if k in ms else "-" for k in ("eager", "compile", "cuda", "triton")]
            ratios = [f"{r[k]:.2f}" if k in r else "-"
                      for k in ("cuda_vs_eager", "triton_vs_eager", "triton_vs_compile")]
            lines.append(f"| {r['group']} | " + " | ".join(cells + ratios) + " |")
    for dtype, r in results.get("model_benchmarks", {}).items():
        lines += ["", f"## Decode one uvg-M clip, {dtype} (median ms)", "", "| variant | ms |", "|---|---|"]
        lines += [f"| {name} | {ms:.2f} |" for name, ms in r["ms"].items()]
    for dtype, r in results.get("train_benchmarks", {}).items():
        lines += ["", f"## Training steps, {dtype} (projected 1600-epoch UVG-M encode: "
                  f"{r['uvg_m_1600_epoch_hours']:.1f} h)", "", "| variant | steps/s | frames/s |",
                  "|---|---|---|"]
        lines += [f"| {name} | {i['steps_per_s']:.2f} | {i['frames_per_s']:.0f} |"
                  for name, i in r["rows"].items()]
    for group, us in results.get("dispatch", {}).get("us", {}).items():
        lines += ["", f"## {group} (median us)", ""] + [f"- {name}: {v:.1f}" for name, v in us.items()]
    profile = results.get("profile", {}).get("output")
    if profile:
        lines += ["", "## dnerv-fast profile uvg-M", "", "```", *profile, "```"]
    checks = targets(results)
    if checks:
        lines += ["", "## Targets", ""] + [f"- [{'x' if ok else ' '}] {what}" for what, ok in checks]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "acceptance")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    status: dict[str, dict[str, Any]] = {}
    for name, step in STEPS:
        t0 = time.time()
        try:
            results[name] = step(args.out)
            status[name] = {"status": "ok"}
        except Skipped as exc:
            status[name] = {"status": "skipped", "note": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a failed step is reported; the others still run
            status[name] = {"status": "failed", "note": f"{type(exc).__name__}: {exc}"}
        status[name]["seconds"] = time.time() - t0
        print(f"[{name}] {status[name]['status']} ({status[name]['seconds']:.0f} s)", flush=True)
    checks = targets(results)
    summary = {"status": status, "results": results, "targets": [{"target": t, "met": ok} for t, ok in checks]}
    (args.out / "acceptance.json").write_text(json.dumps(summary, indent=1, default=str))
    (args.out / "acceptance.md").write_text(markdown(results, status))
    print(f"wrote {args.out / 'acceptance.json'} and {args.out / 'acceptance.md'}")
    return 1 if any(s["status"] == "failed" for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
