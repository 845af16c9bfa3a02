"""How fast a D-NeRV network decodes, on the options a deployment would choose.

The workload is steady-state decoding of one patch video: ``batch`` consecutive clips whose
``batch + 1`` distinct keyframes are encoded once, as a decoder of a stored video does.
Full frames repeat that for every patch of the frame grid and stitch the patches into
8-bit frames. Weights are random (speed does not depend on them), seeded.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from .. import ops
from ..allocator import heap_setting
from ..errors import UsageError
from ..configs import get_config
from ..model import DNeRV
from ..precision import DTYPES, parse_dtype
from ..schedule import clip_inputs, clip_schedule
from ..tiling import patch_grid, stitch
from .breakdown import stage_breakdown
from .timing import peak_memory_mb, reset_peak_memory, summarize, time_repeats


Decoder = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ProfileSettings:
    size: str = "uvg-M"
    backend: str | None = None  # None: whatever DNERV_FAST_BACKEND / set_backend ask for
    dtype: str = "fp32"
    compile: bool = False
    cuda_graphs: bool = False
    batch: int = 1
    device: str = "auto"
    frame_size: tuple[int, int] | None = (1024, 1920)
    warmup: int = 2
    repeats: int = 5
    breakdown: bool = True
    seed: int = 0

    def resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise UsageError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError("device='cuda' asked for, but torch sees no CUDA device here")
        return device

    def validate(self, device: torch.device) -> None:
        try:
            parse_dtype(self.dtype)
            get_config(self.size)
            if self.backend is not None:
                ops.registry.validate_name(self.backend)
        except ValueError as e:
            raise UsageError(str(e)) from e
        if self.batch < 1 or self.repeats < 1 or self.warmup < 0:
            raise UsageError("batch and repeats must be >= 1 and warmup >= 0")
        if self.cuda_graphs and device.type != "cuda":
            raise UsageError("cuda_graphs=True needs a CUDA device")


def _clip_workload(model: DNeRV, batch: int, device: torch.device, dtype: torch.dtype,
                   generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Inputs of ``batch`` consecutive clips of one patch video: (embed, keys, start, end, t)."""
    cfg = model.config
    clips = clip_schedule(batch * cfg.clip_len + 1, cfg.clip_len)[:batch]
    inputs = clip_inputs(clips, cfg.embed_levels, cfg.embed_base)
    frames = torch.rand(batch + 1, 3, 1, *cfg.patch_size, generator=generator)
    keys = model.normalize(frames.to(device)).squeeze(2).to(dtype)
    start = torch.arange(batch, device=device)
    return (inputs.embed_input.to(device, dtype), keys, start, start + 1,
            inputs.backward_distance.to(device, dtype))


def _graphed(fn: Decoder, example: tuple[torch.Tensor, ...]) -> Decoder:
    """Capture ``fn`` on static copies of ``example`` in a CUDA graph; replay copies new inputs in."""
    static_in = [x.clone() for x in example]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up outside the graph: autotuning, allocator pools, lazy init
            fn(*static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(*static_in)

    def replay(*args: torch.Tensor) -> torch.Tensor:
        for dst, src in zip(static_in, args):
            dst.copy_(src)
        graph.replay()
        return static_out

    return replay


def build_decoder(model: DNeRV, settings: ProfileSettings, example: tuple[torch.Tensor, ...]) -> Decoder:
    """``model.decode_clips``, compiled and/or captured in a CUDA graph as ``settings`` ask."""
    fn: Decoder = model.decode_clips
    if settings.compile:
        fn = torch.compile(fn, mode="max-autotune-no-cudagraphs" if settings.cuda_graphs else None)
    if settings.cuda_graphs:
        fn = _graphed(fn, example)
    return fn


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def run_profile(settings: ProfileSettings, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure decoding speed; returns a JSON-ready dict whose ``fps`` is patch frames per second."""
    device = settings.resolve_device()
    settings.validate(device)
    dtype = DTYPES[settings.dtype]
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    model = DNeRV(get_config(settings.size)).eval().to(device)
    reference_model = None
    backend_choice = ops.use_backend(settings.backend) if settings.backend else contextlib.nullcontext()
    if settings.dtype != "fp32" or settings.backend != "reference":
        reference_model = DNeRV(model.config).eval().to(device)
        reference_model.load_state_dict(model.state_dict())
    model = model.to(dtype)
    example = _clip_workload(model, settings.batch, device, dtype, generator)
    T = model.config.clip_len
    result: dict[str, Any] = {"settings": asdict(settings), "device": _device_name(device),
                              "torch": torch.__version__, "threads": torch.get_num_threads(),
                              "malloc": heap_setting()}

    with torch.no_grad(), backend_choice:
        result["backend"] = ops.resolve(device.type)[0]
        progress(f"building the decoder ({result['backend']} backend, {settings.dtype})")
        decoder = build_decoder(model, settings, example)
        reset_peak_memory(device)
        progress("timing 256x320-patch clips" if model.config.patch_size == (256, 320) else "timing clips")
        clip_times = time_repeats(lambda: decoder(*example), device, settings.warmup,
                                  settings.repeats, progress)
        clip = summarize(clip_times)
        result["clip"] = {**clip, "frames_per_call": settings.batch * T,
                          "fps": settings.batch * T / (clip["median_ms"] / 1e3)}
        result["fps"] = result["clip"]["fps"]
        if settings.frame_size is not None:
            progress(f"timing full {settings.frame_size[0]}x{settings.frame_size[1]} frames")
            result["full_frame"] = _full_frames(decoder, example, model, settings, device, progress)
        result["memory"] = peak_memory_mb(device)
        if reference_model is not None:
            progress("comparing with the fp32 reference backend")
            with ops.use_backend("reference"):
                expected = reference_model.decode_clips(*(x.float() if x.is_floating_point() else x for x in example))
            got = decoder(*example).float()
            result["vs_fp32_reference"] = {"max_abs_diff": (got - expected).abs().max().item(),
                                           "psnr_db": _psnr(got, expected)}
        if settings.breakdown:
            progress("per-stage breakdown (torch.profiler, eager)")
            result["breakdown"] = stage_breakdown(lambda: model.decode_clips(*example), device)
    return result


def _full_frames(decoder: Decoder, example: tuple[torch.Tensor, ...], model: DNeRV,
                 settings: ProfileSettings, device: torch.device,
                 progress: Callable[[str], None]) -> dict[str, Any]:
    """Decode the same clips for every patch of a frame grid, stitch, quantise to 8 bits."""
    height, width = settings.frame_size
    grid = patch_grid(height, width, model.config.patch_size)

    def frames() -> torch.Tensor:
        patches = torch.stack([decoder(*example) for _ in range(grid.count)])  # [P, B, 3, T, ph, pw]
        patches = patches.transpose(2, 3).flatten(1, 2)                        # [P, B*T, 3, ph, pw]
        return stitch(patches, grid).mul(255).round_().to(torch.uint8)

    stats = summarize(time_repeats(frames, device, min(settings.warmup, 1), settings.repeats,
                                   progress))
    n = settings.batch * model.config.clip_len
    return {**stats, "size": [height, width], "patches": grid.count, "frames_per_call": n,
            "fps": n / (stats["median_ms"] / 1e3)}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
