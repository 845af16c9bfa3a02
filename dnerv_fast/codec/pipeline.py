"""Encode videos into one .dnerv file, decode it back, and load it for evaluation."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dnerv_fast.codec.atomic import atomic_dir, check_output
from dnerv_fast.codec.bitstream import (FORMAT_VERSION, Container, bits_per_pixel,
                                        read_container, write_container)
from dnerv_fast.codec.errors import BitstreamError, CodecError
from dnerv_fast.codec.keyframes import encode_keyframe, get_codec
from dnerv_fast.codec.quantize import check_bits, check_prune
from dnerv_fast.codec.render import render_video
from dnerv_fast.codec.weights import (dequantize_state_dict, pack_weights, quantize_state_dict,
                                      unpack_weights)
from dnerv_fast.configs import ModelConfig, get_config
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.schedule import keyframe_indices
from dnerv_fast.train.data import PreparedVideo, keyframe_images, prepare_video, restore_video
from dnerv_fast.precision import parse_dtype
from dnerv_fast.train.distributed import Distributed, resolve_device, session
from dnerv_fast.train.masks import MaskSource, fill_holes, video_holes
from dnerv_fast.train.trainer import TrainSettings, train
from dnerv_fast.video_io import Video, read_video, write_video


@dataclass
class Encoded:
    """A model with quantised weights and the videos it reconstructs."""

    model: DNeRV
    videos: list[PreparedVideo]
    header: dict[str, Any]
    file_bytes: int
    section_bytes: dict[str, int]

    @property
    def total_pixels(self) -> int:
        return sum(v.height * v.width * v.length for v in self.videos)

    @property
    def bpp(self) -> float:
        return bits_per_pixel(self.file_bytes, self.total_pixels)

    def render(self, index: int, progress: bool = False) -> np.ndarray:
        return render_video(self.model, self.videos, index, progress=progress)


def unique_names(names: Sequence[str]) -> list[str]:
    """Make video names distinct (``a``, ``a`` -> ``a``, ``a_2``): they name the outputs."""
    out: list[str] = []
    for n in names:
        name, k = n, 1
        while name in out:
            k += 1
            name = f"{n}_{k}"
        out.append(name)
    return out


def read_sources(paths: Sequence[str | os.PathLike], max_frames: int | None = None) -> list[Video]:
    if not paths:
        raise CodecError("no input videos given")
    videos = [read_video(p, max_frames=max_frames) for p in paths]
    for v, n in zip(videos, unique_names([v.name for v in videos])):
        v.name = n
    return videos


def _header(config: ModelConfig, videos: list[PreparedVideo], codec: str, quality: int,
            bits: int, prune: float, params: int, masks: MaskSource | None) -> dict[str, Any]:
    header = {
        "format": "dnerv_fast", "version": FORMAT_VERSION, "config": config.to_dict(),
        "bits": bits, "prune": prune, "keyframe_codec": codec, "keyframe_quality": quality,
        "parameters": params,
        "videos": [{"name": v.name, "height": v.height, "width": v.width, "frames": v.length,
                    "fps": v.fps} for v in videos],
    }
    if masks is not None:
        header["inpainting"] = masks.to_header()
    return header


def _prepare(sources: list[Video], config: ModelConfig, codec: str, quality: int,
             masks: MaskSource | None, dist: Distributed, progress: bool) -> list[PreparedVideo]:
    """Fill the holes, code the keyframes (the processes share the work) and tile."""
    holes = video_holes(masks, sources) if masks is not None else [None] * len(sources)
    inputs = [v if h is None else fill_holes(v, h) for v, h in zip(sources, holes)]
    images = [keyframe_images(v, config) for v in inputs]
    coded = dist.map(lambda frame: encode_keyframe(frame, codec, quality)[0],
                     [f for frames in images for f in frames], "keyframes", progress)
    prepared, pos = [], 0
    for video, frames, hole in zip(inputs, images, holes):
        prepared.append(prepare_video(video, config, codec, coded[pos:pos + len(frames)], hole))
        pos += len(frames)
    return prepared


def encode(videos: Sequence[str | os.PathLike], out_path: str | os.PathLike, size: str = "tiny",
           epochs: int = 100, keyframe_codec: str = "webp", keyframe_quality: int | None = None,
           bits: int = 8, prune: float = 0.0, batch_size: int = 8, lr: float = 5e-4,
           loss: str = "uvg", seed: int = 0, max_frames: int | None = None,
           resume: bool = False, checkpoint_every: int = 0, keep_checkpoint: bool = False,
           overwrite: bool = False, progress: bool = True, device: str = "auto",
           masks: MaskSource | None = None) -> Encoded:
    """Train one D-NeRV on ``videos`` and write everything needed to decode them to ``out_path``.

    Training checkpoints go to ``<out_path>.ckpt`` (every ``checkpoint_every`` epochs and at
    the end; ``resume`` continues from it) and are removed once the file is written, unless
    ``keep_checkpoint``: a finished checkpoint resumed with other ``bits`` or ``prune``
    re-quantises the same trained weights without training again.
    ``device`` is ``auto`` (a GPU when there is one), ``cpu`` or ``cuda``. Under torchrun the
    processes split every batch (``batch_size`` clips in all) and keyframe coding between
    them, and the main process alone writes the file, which is the file one process writes
    up to floating-point differences in training.
    ``masks`` hides pixels from the encoder (inpainting, :mod:`dnerv_fast.train.masks`):
    keyframes and targets are the frames with their holes filled, the loss sees visible
    pixels only, and box mask settings are stored in the header.
    Returns the quantised model (on the CPU) exactly as the decoder will rebuild it.
    """
    out = check_output(out_path, overwrite)
    bits = check_bits(bits)
    prune = check_prune(prune)
    codec, quality = get_codec(keyframe_codec, keyframe_quality)
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, seed=seed)
    settings.validate()
    try:
        config = get_config(size)
    except ValueError as e:
        raise CodecError(str(e)) from e
    with session(device) as dist:
        progress = progress and dist.is_main
        prepared = _prepare(read_sources(videos, max_frames), config, codec.name, quality,
                            masks, dist, progress)
        torch.manual_seed(seed)
        model = DNeRV(config).to(dist.device)
        ckpt = Path(f"{out}.ckpt")
        train(model, prepared, settings, checkpoint=ckpt, checkpoint_every=checkpoint_every,
              resume=resume, progress=progress, dist=dist)
        model.cpu()
        qsd = quantize_state_dict(model.state_dict(), bits, prune)
        model.load_state_dict(dequantize_state_dict(qsd))
        model.eval()
        header = _header(config, prepared, codec.name, quality, bits, prune,
                         sum(p.numel() for p in model.parameters()), masks)
        container = Container(header, pack_weights(qsd),
                              [b for v in prepared for b in v.key_bytes])

        def write() -> int:
            written = write_container(out, container, overwrite)
            if not keep_checkpoint:
                ckpt.unlink(missing_ok=True)
            return written

        size_bytes = dist.on_main(write)
    for v in prepared:
        v.frames = v.visible = None
    return Encoded(model, prepared, header, size_bytes, _section_sizes(container))


def _section_sizes(c: Container) -> dict[str, int]:
    return {"weights": len(c.weights), "keyframes": sum(len(k) for k in c.keyframes)}


def _field(d: dict[str, Any], key: str, kind: type) -> Any:
    if key not in d or not isinstance(d[key], kind):
        raise BitstreamError(f"header field '{key}' is missing or not {kind.__name__}")
    return d[key]


def load(path: str | os.PathLike) -> Encoded:
    """Read a .dnerv file and rebuild the quantised model and every video's keyframes."""
    container = read_container(path)
    h = container.header
    try:
        config = ModelConfig.from_dict(_field(h, "config", dict))
    except (TypeError, ValueError) as e:
        raise BitstreamError(f"header holds an invalid model configuration: {e}") from e
    bits, codec = _field(h, "bits", int), _field(h, "keyframe_codec", str)
    model = DNeRV(config)
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    if sum(int(np.prod(s)) for s in shapes.values()) != _field(h, "parameters", int):
        raise BitstreamError("header parameter count does not match its configuration")
    model.load_state_dict(dequantize_state_dict(unpack_weights(container.weights, shapes, bits)))
    model.eval()
    videos, pos = [], 0
    for v in _field(h, "videos", list):
        length = _field(v, "frames", int)
        count = len(keyframe_indices(length, config.clip_len))
        keys = container.keyframes[pos:pos + count]
        if len(keys) != count:
            raise BitstreamError("file holds fewer keyframes than its videos need")
        videos.append(restore_video(_field(v, "name", str), _field(v, "height", int),
                                    _field(v, "width", int), length, float(v.get("fps", 25.0)),
                                    config, codec, keys))
        pos += count
    if pos != len(container.keyframes):
        raise BitstreamError(f"file holds {len(container.keyframes) - pos} keyframes no video uses")
    return Encoded(model, videos, h, Path(path).stat().st_size, _section_sizes(container))


def decode(path: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "mp4",
           overwrite: bool = False, progress: bool = True, device: str = "auto",
           dtype: str = "fp32") -> list[Path]:
    """Decode every video of a .dnerv file into ``out_dir`` (``NAME.mp4`` or ``NAME/`` PNGs).

    mp4 output is lossless (see :mod:`dnerv_fast.video_io`). The folder appears only when
    every video is written. ``device`` (``auto``, ``cpu``, ``cuda``) and ``dtype`` (``fp32``,
    ``bf16``, ``fp16``) choose where and in what precision the network runs; only fp32 gives
    the frames the encoder measured, half precision stays within a few hundredths of a dB.
    """
    if fmt not in ("mp4", "png"):
        raise CodecError(f"unknown output format '{fmt}' (use mp4 or png)")
    try:
        torch_dtype = parse_dtype(dtype)
    except ValueError as e:
        raise CodecError(str(e)) from e
    target = resolve_device(device)
    check_output(out_dir, overwrite)
    encoded = load(path)
    encoded.model.to(target, torch_dtype)
    written = []
    with atomic_dir(out_dir, overwrite) as tmp:
        for i, v in enumerate(encoded.videos):
            frames = encoded.render(i, progress)
            name = f"{v.name}.mp4" if fmt == "mp4" else v.name
            write_video(frames, tmp / name, v.fps, fmt)
            written.append(Path(out_dir) / name)
    return written
