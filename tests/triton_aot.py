"""Compile every Triton kernel of dnerv_fast for a real NVIDIA target ahead of time, no GPU.

``python tests/triton_aot.py ARCH OUT.json [ci|small|full]`` (ARCH 80 or 90; run WITHOUT
TRITON_INTERPRET). A stand-in Triton driver reports ``GPUTarget("cuda", ARCH, 32)`` and a
benchmarker that only calls each config once; every launch then goes through Triton's whole
pipeline to a cubin with the bundled ptxas (``ptxas -v`` figures captured) and is never run.

The launches are the package's own launch functions (``dnerv_fast.kernels.*``), called on CPU
tensors with the shapes *and strides* the model hands its ops: the model's ``decode_clips``
runs on the meta device and every op call is recorded. So the dtypes, the specialisations
(ints equal to 1, 16-divisible sizes and strides) and the pruned autotune lists are the ones a
GPU would compile. Each distinct binary is compiled once (Triton's in-process cache).

Stage sets, each in fp32/fp16/bf16, forward and training backward: ``ci`` (default) the UVG-M
stages whose maps bound the pruned config lists (the smallest 4x5, the largest 64-channel
128x160 and the RGB 256x320 stage) and the tiny model's 1x1 stage; ``small`` only the two
smallest (every SAF binary is among them: its specialisation does not depend on the stage);
``full`` every stage of UVG-M and tiny.
Writes one JSON record per compiled binary (kernel, dtype, shape, config, registers, spills).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import time

if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("run without TRITON_INTERPRET: this compiles for a GPU target")

import torch  # noqa: E402
from triton import knobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.driver import DriverBase  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
STAGE_SETS: dict[str, set[tuple[str, int]] | None] = {  # (model, index of the op call)
    "ci": {("uvg-M", 0), ("uvg-M", 4), ("uvg-M", 5), ("tiny", 0)},
    "small": {("uvg-M", 0), ("tiny", 0)},
    "full": None,
}


class CompileOnlyDriver(DriverBase):
    """A CUDA driver for a target that is not there: compiles, never launches."""

    def __init__(self, arch: int) -> None:
        self.arch = arch

    @classmethod
    def is_active(cls) -> bool:
        return True

    def map_python_to_cpp_type(self, ty: str) -> str:
        return ty

    def get_current_target(self) -> GPUTarget:
        return GPUTarget("cuda", self.arch, 32)

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device=None) -> int:
        return 0

    def get_device_interface(self):
        return torch.cuda

    def get_benchmarker(self):
        def bench(kernel_call, quantiles=None, **_):
            kernel_call()  # compiles the config; every config "takes" the same time
            return [1.0, 1.0, 1.0]
        return bench


def _ptxas_figures(log: str) -> dict:
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    out = {"regs": int(regs.group(1)) if regs else None}
    if spill:
        out["stack"], out["spill_stores"], out["spill_loads"] = map(int, spill.groups())
    return out


class Recorder:
    """Wraps JITFunction.run: compile instead of launch, one record per new binary."""

    def __init__(self, arch: int) -> None:
        self.arch = arch
        self.records: list[dict] = []
        self.context: dict = {}
        self._seen: set[str] = set()
        self._run = JITFunction.run

    def install(self) -> None:
        recorder = self

        def run(fn, *args, grid, warmup, **kwargs):
            log = io.StringIO()
            start = time.time()
            with contextlib.redirect_stdout(log):
                kernel = recorder._run(fn, *args, grid=grid, warmup=True, **kwargs)
            key = kernel.hash
            if key not in recorder._seen:
                recorder._seen.add(key)
                config = {k: v for k, v in kwargs.items() if k.startswith("BLOCK_")}
                recorder.records.append({
                    **recorder.context, "kernel": fn.__name__, "target": f"sm_{recorder.arch}",
                    "config": config, "num_warps": kernel.metadata.num_warps,
                    "num_stages": kernel.metadata.num_stages, "shared": kernel.metadata.shared,
                    "seconds": round(time.time() - start, 2), **_ptxas_figures(log.getvalue())})
            return kernel

        JITFunction.run = run


def model_op_calls(stages: set[tuple[str, int]] | None) -> list[tuple[str, int, str, list]]:
    """(model, stage, op, argument specs) of every fused op call of decode_clips, recorded on
    the meta device (shapes, strides, dtype; ints as they are)."""
    from dnerv_fast import DNeRV
    from dnerv_fast.ops import reference
    calls: list[tuple[str, int, str, list]] = []
    originals = {op: getattr(reference, op) for op in ("flow_warp", "saf_modulate", "upsample_tail")}
    counter: dict[str, int] = {}

    def spy(op: str):
        def record(*args):
            stage = counter[op] = counter.get(op, -1) + 1
            if stages is None or (model_name, stage) in stages:
                calls.append((model_name, stage, op, [
                    (tuple(a.shape), a.stride()) if isinstance(a, torch.Tensor) else a for a in args]))
            return originals[op](*args)
        return record

    try:
        for op in originals:
            setattr(reference, op, spy(op))
        for model_name in ("uvg-M", "tiny"):
            counter.clear()
            model = DNeRV.from_config(model_name).to("meta")
            ph, pw = model.config.patch_size
            T, E = model.config.clip_len, model.config.embed_length
            idx = torch.arange(1, device="meta")
            with torch.no_grad():
                model.decode_clips(torch.zeros(1, E, T, device="meta"), torch.zeros(2, 3, ph, pw, device="meta"),
                                   idx, idx + 1, torch.zeros(1, T, device="meta"))
    finally:
        for op, fn in originals.items():
            setattr(reference, op, fn)
    return calls


def _tensor(spec, dtype: torch.dtype) -> torch.Tensor | None:
    if spec is None:
        return None
    shape, stride = spec
    return torch.empty_strided(shape, stride, dtype=dtype)


def compile_calls(recorder: Recorder, calls: list, dtypes: dict[str, torch.dtype]) -> list[dict]:
    """Run each recorded call's forward and training backward through the launch functions."""
    from dnerv_fast.kernels import flow_warp, saf, upsample_tail
    failures = []
    for dname, dtype in dtypes.items():
        for model_name, stage, op, specs in calls:
            args = [_tensor(s, dtype) if isinstance(s, tuple) or s is None else s for s in specs]
            recorder.context = {"model": model_name, "stage": stage, "op": op, "dtype": dname,
                                "shape": str(specs[0][0])}
            try:
                if op == "flow_warp":
                    start, end, flow, t = args
                    out = flow_warp.flow_warp_forward(start, end, flow, t)
                    flow_warp.flow_warp_backward(torch.empty_like(out), start, end, flow, t,
                                                 (True, True, True, False))
                elif op == "saf_modulate":
                    out = saf.saf_forward(*args)
                    saf.saf_backward(torch.empty_like(out), *args, (True, True, True, True))
                else:
                    out = upsample_tail.tail_forward(*args)
                    upsample_tail.tail_backward(torch.empty_like(out), *args, (True, True, True, True))
            except Exception as exc:  # noqa: BLE001 - every failure is reported, then the test fails
                failures.append({**recorder.context, "error": f"{type(exc).__name__}: {str(exc)[:3000]}"})
    return failures


def main(argv: list[str]) -> int:
    arch, out_path = int(argv[1]), argv[2]
    stage_set = argv[3] if len(argv) > 3 else "ci"
    driver.set_active(CompileOnlyDriver(arch))
    knobs.nvidia.dump_ptxas_log = True  # ptxas -v output on stdout, captured per compile
    recorder = Recorder(arch)
    recorder.install()
    start = time.time()
    failures = compile_calls(recorder, model_op_calls(STAGE_SETS[stage_set]), DTYPES)
    with open(out_path, "w") as f:
        json.dump({"arch": arch, "stages": stage_set, "seconds": round(time.time() - start, 1),
                   "binaries": recorder.records, "failures": failures}, f, indent=1)
    print(f"sm_{arch}: {len(recorder.records)} binaries, {len(failures)} failures, "
          f"{time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
