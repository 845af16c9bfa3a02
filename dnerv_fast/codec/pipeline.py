"""Encode videos into one .dnerv file, decode it back, and load it for evaluation."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dnerv_fast.atomic import (atomic_dir, check_file_output, check_folder_output,
                               check_replaceable)
from dnerv_fast.codec.bitstream import (FORMAT_VERSION, Container, bits_per_pixel,
                                        read_container, section_sizes, write_container)
from dnerv_fast.errors import (CodecError, Interrupted, OutputExistsError,
                               OutputPathError, UsageError)
from dnerv_fast.codec.header import FORMAT_NAME, keyframe_count, parse_header
from dnerv_fast.media.keyframes import (DEFAULT_CODEC as DEFAULT_KEYFRAME_CODEC, code_keyframe,
                                        decode_keyframe, get_codec)
from dnerv_fast.codec.quantize import check_bits, check_prune
from dnerv_fast.codec.names import safe_names
from dnerv_fast.codec.qat import qat_phase
from dnerv_fast.codec.rate import RatePlan, plan
from dnerv_fast.codec.render import RENDER_CHUNK, render_video
from dnerv_fast.codec.summary import Truth, measure as measure_truth
from dnerv_fast.codec.weight_report import WeightsSummary
from dnerv_fast.codec.weights import (dequantize_state_dict, model_shapes, pack_weights,
                                      quantize_state_dict, read_layout, unpack_weights)
from dnerv_fast.configs import ModelConfig, get_config
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.clips.data import PreparedVideo, keyframe_images, prepare_video, restore_video
from dnerv_fast.precision import parse_dtype
from dnerv_fast.devices import resolve_device
from dnerv_fast.train.distributed import Distributed, session
from dnerv_fast.train.masks import MaskSource, fill_holes, video_holes
from dnerv_fast.train.trainer import TrainSettings, train
from dnerv_fast.media.video_io import Video, png_names, read_video, write_video


@dataclass
class Encoded:
    """A model with quantised weights and the videos it reconstructs."""

    model: DNeRV
    videos: list[PreparedVideo]
    header: dict[str, Any]
    file_bytes: int
    section_bytes: dict[str, int]
    rate_plan: RatePlan | None = None
    truth: Truth | None = None

    @property
    def total_pixels(self) -> int:
        return sum(v.height * v.width * v.length for v in self.videos)

    @property
    def bpp(self) -> float:
        return bits_per_pixel(self.file_bytes, self.total_pixels)

    def render(self, index: int, progress: bool = False) -> np.ndarray:
        return render_video(self.model, self.videos, index, progress=progress)


def read_sources(paths: Sequence[str | os.PathLike], max_frames: int | None = None) -> list[Video]:
    if not paths:
        raise CodecError("no input videos given")
    videos = [read_video(p, max_frames=max_frames) for p in paths]
    for v, n in zip(videos, safe_names([v.name for v in videos])):
        v.name = n
    return videos


def _entries(videos: Sequence[Video]) -> list[dict[str, Any]]:
    """The header's description of each video."""
    return [{"name": v.name, "height": v.height, "width": v.width, "frames": v.num_frames,
             "fps": v.fps} for v in videos]


def _header(config: ModelConfig, entries: list[dict[str, Any]], codec: str, quality: int,
            bits: int, prune: float, params: int, masks: MaskSource | None) -> dict[str, Any]:
    header = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "config": config.to_dict(),
        "bits": bits, "prune": prune, "keyframe_codec": codec, "keyframe_quality": quality,
        "parameters": params, "videos": entries,
    }
    if masks is not None:
        header["inpainting"] = masks.to_header()
    return header


def _fill(sources: list[Video], masks: MaskSource | None
          ) -> tuple[list[Video], list[np.ndarray | None]]:
    """The videos the encoder codes (holes filled) and their holes."""
    holes = video_holes(masks, sources) if masks is not None else [None] * len(sources)
    return [v if h is None else fill_holes(v, h) for v, h in zip(sources, holes)], holes


def _code(images: list[np.ndarray], codec: str, quality: int, dist: Distributed,
          progress: bool) -> list[bytes]:
    """Every keyframe coded at ``quality`` (the processes share the work)."""
    return dist.map(lambda frame: code_keyframe(frame, codec, quality), images,
                    "keyframes", progress)


def _prepare(inputs: list[Video], holes: list[np.ndarray | None], config: ModelConfig,
             codec: str, coded: list[bytes], dist: Distributed) -> list[PreparedVideo]:
    """Tile the videos with their coded keyframes (``coded``: all videos' keyframes in
    order), each decoded here, once: training and the final measurement use these frames."""
    sizes = [(v.height, v.width) for v in inputs for _ in keyframe_images(v, config)]
    frames = dist.map(lambda i: decode_keyframe(coded[i], codec, sizes[i]), range(len(coded)))
    prepared, pos = [], 0
    for video, hole in zip(inputs, holes):
        count = len(keyframe_images(video, config))
        prepared.append(prepare_video(video, config, codec, coded[pos:pos + count], hole,
                                      frames[pos:pos + count]))
        pos += count
    return prepared


def _plan_rate(target_bpp: float, inputs: list[Video], base: ModelConfig, codec: str,
               quality: int | None, bits: int, prune: float, masks: MaskSource | None,
               dist: Distributed) -> RatePlan:
    """Widths and keyframe quality for ``target_bpp`` (:mod:`.rate`), with the exact header."""
    images = [f for v in inputs for f in keyframe_images(v, base)]
    entries = _entries(inputs)

    def overhead(config: ModelConfig, params: int, q: int) -> int:
        header = _header(config, entries, codec, q, bits, prune, params, masks)
        sizes = section_sizes(Container(header, b"", []))
        return sizes["framing"] + sizes["header"]

    return plan(target_bpp, sum(v.height * v.width * v.num_frames for v in inputs), base, bits,
                codec, None if quality is None else [quality],
                lambda q: _code(images, codec, q, dist, False), overhead)


def encode(videos: Sequence[str | os.PathLike], out_path: str | os.PathLike, *, size: str = "tiny",
           epochs: int = 100, keyframe_codec: str = DEFAULT_KEYFRAME_CODEC, keyframe_quality: int | None = None,
           bits: int = 8, prune: float = 0.0, batch_size: int = 8, lr: float = 5e-4,
           loss: str = "uvg", seed: int = 0, max_frames: int | None = None,
           resume: bool = False, checkpoint_every: int = 0, keep_checkpoint: bool = False,
           overwrite: bool = False, progress: bool = True, device: str = "auto",
           masks: MaskSource | None = None, target_bpp: float | None = None,
           qat: float = 0.2, measure: bool = False, precision: str = "fp32",
           compile: bool = False) -> Encoded:
    """Train one D-NeRV on ``videos`` and write everything needed to decode them to ``out_path``.

    ``videos``: video files (anything PyAV reads) or folders of frames; ``out_path``: the
    ``.dnerv`` file (its folder must exist). The rest mirror ``dnerv-fast encode``:
    ``size`` a named configuration (:data:`dnerv_fast.configs.CONFIGS`); ``epochs``,
    ``batch_size`` (clips per step), ``lr`` (peak, warm-up then cosine), ``loss`` (``uvg`` or
    ``ucf101``) and ``seed`` the training; ``keyframe_codec`` / ``keyframe_quality`` the
    keyframes' intra codec (:mod:`dnerv_fast.media.keyframes`); ``bits`` (4..8) and
    ``prune`` (a fraction, by magnitude, biases kept: cut when the QAT phase starts, which
    then fine-tunes the rest; without QAT, cut after training) the weights; ``max_frames``
    keeps only the first frames of each video; ``overwrite`` replaces an existing output;
    ``progress`` shows bars.

    Training checkpoints go to ``<out_path>.ckpt`` (every ``checkpoint_every`` epochs and
    after the last float epoch; ``resume`` continues from it) and are removed once the file
    is written, unless ``keep_checkpoint``: a finished checkpoint resumed with other ``bits``
    or ``prune`` trains only the QAT epochs again at those (without QAT it re-quantises the
    same trained weights, training nothing).
    ``device`` is ``auto`` (a GPU when there is one), ``cpu`` or ``cuda``. Under torchrun the
    processes split every batch (``batch_size`` clips in all) and keyframe coding between
    them, and the main process alone writes the file, which is the file one process writes
    up to floating-point differences in training.
    ``masks`` hides pixels from the encoder (inpainting, :mod:`dnerv_fast.train.masks`):
    keyframes and targets are the frames with their holes filled, the loss sees visible
    pixels only, and box mask settings are stored in the header.
    ``target_bpp`` asks for a file of that many bits per pixel, every byte counted: the
    widths of ``size`` are scaled and the keyframe quality chosen (unless given) to land
    within 15% of it (:mod:`.rate`; the choice is printed with ``progress`` and returned as
    ``rate_plan``); a target the smallest network cannot reach raises :class:`CodecError`.
    ``precision`` (``fp32``, ``bf16``, ``fp16``) is the type training computes in (fp32
    master weights, :mod:`dnerv_fast.train.mixed`); ``compile`` trains the clip decoder
    under ``torch.compile``.
    ``qat`` is the share of ``epochs`` spent last in quantisation-aware training at
    ``bits`` (:mod:`.qat`; 0 turns it off): the last epochs of the one schedule, not
    checkpointed (resuming runs them again from the checkpoint before them).
    ``measure`` decodes the written model on the real frames for ``psnr`` (after
    quantisation) and the raw RGB size, and finds x264's size at that PSNR
    (:mod:`.summary`; the command line always measures, the API on request).
    Returns the quantised model (on the CPU) exactly as the decoder will rebuild it.
    """
    out = check_file_output(out_path, overwrite)
    if out.suffix != ".dnerv":
        raise OutputPathError(f"the output of encode is a .dnerv file; '{out}' does not end in "
                              f".dnerv")
    ckpt = Path(f"{out}.ckpt")
    if not resume and ckpt.exists() and not overwrite:
        raise OutputExistsError(f"checkpoint '{ckpt}' of an earlier run exists; pass --resume "
                                f"to continue it or --overwrite to start over and replace it")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or \
            checkpoint_every < 0:
        raise UsageError(f"checkpoint_every must be a whole number of epochs >= 0, got "
                         f"{checkpoint_every!r}")
    bits = check_bits(bits)
    prune = check_prune(prune)
    codec, quality = get_codec(keyframe_codec, keyframe_quality)
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, seed=seed,
                             precision=precision, compile=compile)
    settings.validate()
    late = qat_phase(epochs, qat, bits, prune)
    try:
        config = get_config(size)
    except ValueError as e:
        raise CodecError(str(e)) from e
    with session(device) as dist:
        progress = progress and dist.is_main
        sources = read_sources(videos, max_frames)
        inputs, holes = _fill(sources, masks)
        rate_plan = None
        if target_bpp is not None:
            rate_plan = _plan_rate(target_bpp, inputs, config, codec.name, keyframe_quality,
                                   bits, prune, masks, dist)
            config, quality, coded = rate_plan.network.config, rate_plan.quality, rate_plan.keyframes
            if progress:
                print(rate_plan.describe(codec.name))
        else:
            coded = _code([f for v in inputs for f in keyframe_images(v, config)], codec.name,
                          quality, dist, progress)
        prepared = _prepare(inputs, holes, config, codec.name, coded, dist)
        torch.manual_seed(seed)
        model = DNeRV(config).to(dist.device)
        try:
            if late is not None and progress:
                print(f"quantisation-aware training: the last {epochs - late.start} of "
                      f"{epochs} epochs train {late.label}")
            train(model, prepared, settings, checkpoint=ckpt, checkpoint_every=checkpoint_every,
                  resume=resume, progress=progress, dist=dist, late=late)
        except KeyboardInterrupt:
            raise Interrupted(_resume_hint(ckpt)) from None
        model.cpu()
        qsd = quantize_state_dict(model.state_dict(), bits, prune)
        model.load_state_dict(dequantize_state_dict(qsd))
        model.eval()
        header = _header(config, _entries(inputs), codec.name, quality, bits, prune,
                         sum(p.numel() for p in model.parameters()), masks)
        container = Container(header, pack_weights(qsd),
                              [b for v in prepared for b in v.key_bytes])

        def write() -> int:
            try:
                written = write_container(out, container, overwrite)
            except CodecError as e:
                raise type(e)(f"{e}; the trained network is kept in '{ckpt}': run the same "
                              f"command with --resume to write the file without training "
                              f"again") from e
            if not keep_checkpoint:
                ckpt.unlink(missing_ok=True)
            return written

        size_bytes = dist.on_main(write)
    for v in prepared:
        v.frames = v.visible = None
    encoded = Encoded(model, prepared, header, size_bytes, section_sizes(container), rate_plan)
    if measure and dist.is_main:
        layout = read_layout(container.weights, {k: q.shape for k, q in qsd.items()}, bits)
        encoded.truth = measure_truth([encoded.render(i) for i in range(len(prepared))],
                                      [v.frames for v in sources], [v.fps for v in sources],
                                      size_bytes, weights=WeightsSummary.of(layout))
    return encoded


def _resume_hint(ckpt: Path) -> str:
    if ckpt.exists():
        return (f"interrupted; training so far is saved in '{ckpt}': run the same command with "
                f"--resume to continue")
    return ("interrupted; no checkpoint was saved yet (--checkpoint-every N saves one every "
            "N epochs, and --resume continues from it)")


def load(path: str | os.PathLike) -> Encoded:
    """Read a .dnerv file and rebuild the quantised model and every video's keyframes.

    Everything the file declares is validated (:mod:`.header`) before anything is built from
    it; keyframes are decoded later, when a video is rendered, each checked against the size
    the header gives.
    """
    container = read_container(path)
    head = parse_header(container.header, version=FORMAT_VERSION,
                        keyframes=len(container.keyframes), clips_per_pass=RENDER_CHUNK)
    config = head.config
    shapes = model_shapes(config, head.parameters)
    weights = dequantize_state_dict(unpack_weights(container.weights, shapes, head.bits))
    model = DNeRV(config)
    model.load_state_dict(weights)
    model.eval()
    videos, pos = [], 0
    for v in head.videos:
        count = keyframe_count(v.frames, config.clip_len)
        videos.append(restore_video(v.name, v.height, v.width, v.frames, v.fps, config,
                                    head.keyframe_codec, container.keyframes[pos:pos + count]))
        pos += count
    return Encoded(model, videos, head.raw, Path(path).stat().st_size, section_sizes(container))


def decode(path: str | os.PathLike, out_dir: str | os.PathLike, *, fmt: str = "mp4",
           overwrite: bool = False, progress: bool = True, device: str = "auto",
           dtype: str = "fp32") -> list[Path]:
    """Decode every video of a .dnerv file into ``out_dir`` (``NAME.mp4`` or ``NAME/`` PNGs).

    mp4 output is lossless (see :mod:`dnerv_fast.media.video_io`). Names stored in the file become
    safe file names (:mod:`.names`). A new folder appears only when every video is written;
    with ``overwrite`` an existing folder gains the decoded videos and keeps its other files
    (:func:`~dnerv_fast.atomic.atomic_dir`). ``device`` (``auto``, ``cpu``, ``cuda``) and ``dtype`` (``fp32``,
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
    check_folder_output(out_dir, overwrite)
    encoded = load(path)
    encoded.model.to(target, torch_dtype)
    names = safe_names([v.name for v in encoded.videos])
    entries = {f"{n}.mp4" if fmt == "mp4" else n: None if fmt == "mp4" else png_names(v.length)
               for n, v in zip(names, encoded.videos)}
    if overwrite:
        check_replaceable(Path(out_dir), entries)
    with atomic_dir(out_dir, overwrite) as tmp:
        for i, (entry, v) in enumerate(zip(entries, encoded.videos)):
            write_video(encoded.render(i, progress), tmp / entry, v.fps, fmt)
    return [Path(out_dir) / entry for entry in entries]
