"""Encode videos into one .dnerv file, decode it back, and load it for evaluation."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

import numpy as np
import torch

from dnerv_fast.atomic import (atomic_dir, atomic_path, check_file_output,
                               check_folder_output, check_replaceable)
from dnerv_fast.codec.bitstream import (FORMAT_VERSION, Container, bits_per_pixel,
                                        read_container, section_sizes, write_container)
from dnerv_fast.errors import (CodecError, Interrupted, OutputExistsError,
                               OutputPathError, UsageError)
from dnerv_fast.codec.guard import Verdict, check_output, warn_if_useless
from dnerv_fast.codec.header import FORMAT_NAME, keyframe_count, parse_header
from dnerv_fast.codec.memory import check_decode_memory, decode_memory
from dnerv_fast.locks import locks_output
from dnerv_fast.media.keyframes import KeyframeCodec, code_keyframe, decode_keyframe, get_codec
from dnerv_fast.codec.quantize import check_bits, check_prune
from dnerv_fast.codec.names import safe_names
from dnerv_fast.codec.qat import qat_phase
from dnerv_fast.codec.rate import RatePlan, plan
from dnerv_fast.codec.render import GROUP_CLIPS, RENDER_CHUNK, render_range, render_video
from dnerv_fast.codec.summary import EncodeSummary, measure as measure_summary
from dnerv_fast.codec.weight_report import WeightsSummary
from dnerv_fast.codec.weights import (dequantize_state_dict, model_shapes, pack_weights,
                                      quantize_state_dict, read_layout, unpack_weights)
from dnerv_fast.configs import ModelConfig, get_config
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.clips.data import (PreparedVideo, all_clips, keyframe_images, prepare_video,
                                   restore_video)
from dnerv_fast.precision import parse_dtype
from dnerv_fast.devices import resolve_device
from dnerv_fast.train.distributed import Distributed, session
from dnerv_fast.train.masks import MaskSource, fill_holes, video_holes
from dnerv_fast.options import EncodeSettings, build, docstring
from dnerv_fast.train.recipe import Recipe, choose as choose_recipe
from dnerv_fast.train.trainer import LatePhase, TrainSettings, train
from dnerv_fast.media.output import FORMATS, SUFFIXES, FrameWriter, YuvTarget, depth_for
from dnerv_fast.media.planar import SourceOptions, to_rgb8
from dnerv_fast.media.video_io import Video, png_names, read_video
from dnerv_fast.media.yuv import Crop

RGB_SOURCE = {"bit_depth": 8, "chroma": "rgb"}   # the header's record of an RGB source


@dataclass
class Encoded:
    """A model with quantised weights and the videos it reconstructs."""

    model: DNeRV
    videos: list[PreparedVideo]
    header: dict[str, Any]
    file_bytes: int
    section_bytes: dict[str, int]
    rate_plan: RatePlan | None = None
    summary: EncodeSummary | None = None
    recipe: Recipe | None = None
    verdict: Verdict | None = None

    @property
    def total_pixels(self) -> int:
        return sum(v.height * v.width * v.length for v in self.videos)

    @property
    def bpp(self) -> float:
        return bits_per_pixel(self.file_bytes, self.total_pixels)

    def render(self, index: int, progress: bool = False, depth: int = 8) -> np.ndarray:
        """Every frame of video ``index``, [N, H, W, 3] uint8 (``depth`` 16: uint16 RGB,
        value / 65535, what deeper-than-8-bit output is made from)."""
        return render_video(self.model, self.videos, index, progress=progress, depth=depth)

    def index_of(self, video: int | str) -> int:
        """The index of a video given by index or by name."""
        names = [v.name for v in self.videos]
        if isinstance(video, str):
            if video not in names:
                raise UsageError(f"no video named {video!r} in the file (it holds "
                                 f"{', '.join(map(repr, names[:10]))})")
            return names.index(video)
        if isinstance(video, bool) or not isinstance(video, int) or \
                not 0 <= video < len(names):
            raise UsageError(f"video must be a name or an index in 0..{len(names) - 1}, "
                             f"got {video!r}")
        return video

    def frame_range(self, video: int | str, start: int = 0, stop: int | None = None
                    ) -> tuple[int, int, int]:
        """(index, start, stop) of a frame range of a video, checked; ``stop`` None is the
        end, negative values count from the end as in Python slices."""
        index = self.index_of(video)
        n = self.videos[index].length
        lo, hi, step = slice(start, stop).indices(n)
        if hi <= lo:
            raise UsageError(f"frames {start}:{'' if stop is None else stop} select nothing "
                             f"of the {n} frames of '{self.videos[index].name}'")
        return index, lo, hi

    def stream(self, video: int | str, start: int = 0, stop: int | None = None,
               depth: int = 8, progress: bool = False) -> Iterator[np.ndarray]:
        """Frames ``start:stop`` of ``video`` in arrays [n, H, W, 3], a group of clips at a
        time (:func:`.render.render_range`): memory does not grow with the range."""
        index, lo, hi = self.frame_range(video, start, stop)
        return render_range(self.model, self.videos, index, lo, hi, depth, progress=progress)

    def frames(self, video: int | str, start: int = 0, stop: int | None = None,
               depth: int = 8) -> Iterator[np.ndarray]:
        """Frames ``start:stop`` of ``video`` (a name or an index), one [H, W, 3] RGB array
        (uint8; ``depth`` 16: uint16, value / 65535) at a time. Only the clips covering the
        range are decoded, and the frames are bit-identical to the same frames of a full
        decode."""
        for group in self.stream(video, start, stop, depth):
            yield from group


def read_sources(paths: Sequence[str | os.PathLike], max_frames: int | None = None,
                 source: SourceOptions | None = None) -> list[Video]:
    """The videos at ``paths``, laid out and cropped by ``source`` (:mod:`.media.planar`;
    a YUV source is cropped in its planes, others after reading)."""
    if not paths:
        raise CodecError("no input videos given")
    videos = [read_video(p, max_frames=max_frames, options=source) for p in paths]
    crop = Crop.parse(source.crop) if source is not None and source.crop else None
    for v, n in zip(videos, safe_names([v.name for v in videos])):
        v.name = n
        if crop is not None and v.source is None:
            crop.check(v.width, v.height, n)
            v.frames = np.ascontiguousarray(crop.rgb(v.frames))
    return videos


def _entries(videos: Sequence[Video]) -> list[dict[str, Any]]:
    """The header's description of each video, with its source's depth and chroma format."""
    return [{"name": v.name, "height": v.height, "width": v.width, "frames": v.num_frames,
             "fps": v.fps, **(v.source.describe() if v.source else RGB_SOURCE)} for v in videos]


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


def _fill_holes(sources: list[Video], masks: MaskSource | None
                ) -> tuple[list[Video], list[np.ndarray | None]]:
    """The videos the encoder codes (holes filled) and their holes."""
    holes = video_holes(masks, sources) if masks is not None else [None] * len(sources)
    return [v if h is None else fill_holes(v, h) for v, h in zip(sources, holes)], holes


def _code_keyframes(images: list[np.ndarray], codec: str, quality: int, dist: Distributed,
                    progress: bool) -> list[bytes]:
    """Every keyframe coded at ``quality`` (the processes share the work)."""
    return dist.map(lambda frame: code_keyframe(frame, codec, quality), images,
                    "keyframes", progress)


def _tile_videos(inputs: list[Video], holes: list[np.ndarray | None], config: ModelConfig,
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
                lambda q: _code_keyframes(images, codec, q, dist, False), overhead)


@dataclass(frozen=True)
class _EncodeJob:
    """An encode's settings, checked, and the paths it writes."""

    settings: EncodeSettings
    out: Path
    checkpoint: Path
    codec: KeyframeCodec
    quality: int
    config: ModelConfig
    train: TrainSettings
    late: LatePhase | None


def _check_job(s: EncodeSettings, out_path: str | os.PathLike, overwrite: bool) -> _EncodeJob:
    """Phase 1: every setting and the output checked before any work starts."""
    out = check_file_output(out_path, overwrite)
    if out.suffix != ".dnerv":
        raise OutputPathError(f"the output of encode is a .dnerv file; '{out}' does not end in "
                              f".dnerv")
    ckpt = Path(f"{out}.ckpt")
    if not s.resume and ckpt.exists() and not overwrite:
        raise OutputExistsError(f"checkpoint '{ckpt}' of an earlier run exists; pass resume=True "
                                f"to continue it or overwrite=True to start over and replace it")
    bits, prune = check_bits(s.bits), check_prune(s.prune)
    codec, quality = get_codec(s.keyframe_codec, s.keyframe_quality)
    # The recipe's values come once the network is built (_train_network); the ones given
    # are checked here, before any work.
    given = {k: v for k, v in (("batch_size", s.batch_size), ("lr", s.lr), ("warmup", s.warmup))
             if v is not None}
    settings = TrainSettings(epochs=s.epochs, loss=s.loss, seed=s.seed, precision=s.precision,
                             compile=s.compile, **given)
    settings.validate()
    late = qat_phase(s.epochs, s.qat, bits, prune)
    try:
        config = get_config(s.size)
    except ValueError as e:
        raise UsageError(str(e)) from e
    return _EncodeJob(s, out, ckpt, codec, quality, config, settings, late)


def _prepare_inputs(job: _EncodeJob, inputs: list[Video], holes: list[np.ndarray | None],
                    masks: MaskSource | None, dist: Distributed, progress: bool
                    ) -> tuple[list[PreparedVideo], ModelConfig, int, RatePlan | None]:
    """Phase 2: keyframes coded (at the rate target's choice, if any) and the videos tiled.
    Returns the videos, the configuration and keyframe quality used, and the rate plan."""
    s, codec = job.settings, job.codec.name
    config, quality, rate_plan = job.config, job.quality, None
    if s.target_bpp is not None:
        rate_plan = _plan_rate(s.target_bpp, inputs, config, codec, s.keyframe_quality,
                               s.bits, s.prune, masks, dist)
        config, quality, coded = rate_plan.network.config, rate_plan.quality, rate_plan.keyframes
        if progress:
            print(rate_plan.describe(codec))
    else:
        coded = _code_keyframes([f for v in inputs for f in keyframe_images(v, config)], codec,
                                quality, dist, progress)
    return _tile_videos(inputs, holes, config, codec, coded, dist), config, quality, rate_plan


def _train_network(job: _EncodeJob, config: ModelConfig, prepared: list[PreparedVideo],
                   dist: Distributed, progress: bool) -> tuple[DNeRV, Recipe]:
    """Phase 3: a new network trained on the videos (checkpointed, resumable) with the
    recipe chosen for this run (:mod:`dnerv_fast.train.recipe`)."""
    s = job.settings
    torch.manual_seed(s.seed)
    model = DNeRV(config).to(dist.device)
    recipe = choose_recipe(s.recipe, epochs=s.epochs, clips=len(all_clips(prepared)),
                           parameters=sum(p.numel() for p in model.parameters()), lr=s.lr,
                           warmup=s.warmup, batch_size=s.batch_size)
    settings = replace(job.train, lr=recipe.lr, warmup=recipe.warmup,
                       batch_size=recipe.batch_size)
    if progress:
        print(recipe.describe())
    try:
        if job.late is not None and progress:
            print(f"quantisation-aware training: the last {s.epochs - job.late.start} of "
                  f"{s.epochs} epochs train {job.late.label}")
        train(model, prepared, settings, checkpoint=job.checkpoint,
              checkpoint_every=s.checkpoint_every, resume=s.resume, progress=progress,
              dist=dist, late=job.late)
    except KeyboardInterrupt:
        raise Interrupted(_resume_hint(job.checkpoint)) from None
    return model, recipe


def _write_file(job: _EncodeJob, container: Container, overwrite: bool) -> int:
    """Phase 5 (main process): the file written atomically, then the checkpoint removed."""
    try:
        written = write_container(job.out, container, overwrite)
    except CodecError as e:
        if not job.checkpoint.is_file():   # say that work is kept only where it is
            raise
        raise type(e)(f"{e}; the trained network is kept in '{job.checkpoint}': run the same "
                      f"encode with resume=True to write the file without training "
                      f"again") from e
    if not job.settings.keep_checkpoint:
        job.checkpoint.unlink(missing_ok=True)
    return written


@locks_output("out_path")
def encode(videos: Sequence[str | os.PathLike], out_path: str | os.PathLike,
           settings: EncodeSettings | None = None, *, masks: MaskSource | None = None,
           overwrite: bool = False, progress: bool = True, device: str = "auto",
           measure: bool = False, source: SourceOptions | None = None,
           **options: Any) -> Encoded:
    """Train one D-NeRV on ``videos`` and write everything needed to decode them to ``out_path``.

    ``videos``: video files (anything PyAV reads) or folders of frames; ``out_path``: the
    ``.dnerv`` file (its folder must exist). ``settings`` (an :class:`EncodeSettings`) and
    keyword arguments of the same names (they replace its fields) mirror
    ``dnerv-fast encode``; the settings and their defaults are listed below.

    The run holds ``<out_path>.lock`` (:mod:`dnerv_fast.locks`) from start to end: a second
    run to the same output raises :class:`~dnerv_fast.errors.OutputLockedError` at once.
    Training checkpoints go to ``<out_path>.ckpt`` (every ``checkpoint_every`` epochs and
    after the last float epoch; ``resume`` continues from it) and are removed once the file
    is written, unless ``keep_checkpoint``: a finished checkpoint resumed with other ``bits``
    or ``prune`` trains only the QAT epochs again at those (without QAT it re-quantises the
    same trained weights, training nothing). ``qat`` epochs are the last of the one schedule,
    not checkpointed (resuming runs them again from the checkpoint before them).
    ``target_bpp`` lands within 15% of the target (:mod:`.rate`; the choice is printed with
    ``progress`` and returned as ``rate_plan``); a target the smallest network cannot reach
    raises :class:`CodecError`.

    ``device`` is ``auto`` (a GPU when there is one), ``cpu`` or ``cuda``. Under torchrun the
    processes split every batch (``batch_size`` clips in all) and keyframe coding between
    them, and the main process alone writes the file, which is the file one process writes
    up to floating-point differences in training.
    ``masks`` hides pixels from the encoder (inpainting, :mod:`dnerv_fast.train.masks`):
    keyframes and targets are the frames with their holes filled, the loss sees visible
    pixels only, and box mask settings are stored in the header. ``overwrite`` replaces an
    existing output; ``progress`` shows progress.
    ``source`` reads raw ``.yuv`` files (size, pixel format, fps where their names do not
    say), sets the YUV matrix and range, and crops every video before tiling
    (:class:`~dnerv_fast.media.planar.SourceOptions`); YUV sources are trained against
    their full precision and recorded in the header with their depth and chroma format.
    ``measure`` decodes the written model on the real frames for ``psnr`` (after
    quantisation) and the raw RGB size, and finds x264's size at that PSNR
    (:mod:`.summary`; the command line always measures, the API on request).
    Measuring or not, the written file is checked (:mod:`.guard`, returned as ``verdict``):
    an :class:`~dnerv_fast.codec.guard.OutputQualityWarning` says when it decodes worse than
    x264 at CRF 51 or below 20 dB, or is larger than the raw frames, and what to change.
    ``recipe`` ``"default"`` picks the peak learning rate from the run's optimiser steps and
    network size, ``"paper"`` is the published recipe; ``lr``, ``batch_size`` and ``warmup``
    override either (:mod:`dnerv_fast.train.recipe`; printed with ``progress``, returned as
    ``recipe``).
    Returns the quantised model (on the CPU) exactly as the decoder will rebuild it.

    Settings:

    {settings}
    """
    job = _check_job(build(EncodeSettings, settings, options), out_path, overwrite)
    s = job.settings
    with session(device) as dist:
        progress = progress and dist.is_main
        sources = read_sources(videos, s.max_frames, source)
        inputs, holes = _fill_holes(sources, masks)
        prepared, config, quality, rate_plan = _prepare_inputs(job, inputs, holes, masks, dist,
                                                               progress)
        model, recipe = _train_network(job, config, prepared, dist, progress)
        # Phase 4: the weights quantised, the model left exactly as the decoder rebuilds it.
        model.cpu()
        qsd = quantize_state_dict(model.state_dict(), s.bits, s.prune)
        model.load_state_dict(dequantize_state_dict(qsd))
        model.eval()
        header = _header(config, _entries(inputs), job.codec.name, quality, s.bits, s.prune,
                         sum(p.numel() for p in model.parameters()), masks)
        container = Container(header, pack_weights(qsd),
                              [b for v in prepared for b in v.key_bytes])
        size_bytes = dist.on_main(lambda: _write_file(job, container, overwrite))
    for v in prepared:
        v.frames = v.visible = None
    encoded = Encoded(model, prepared, header, size_bytes, section_sizes(container), rate_plan,
                      recipe=recipe)
    if measure and dist.is_main:
        # Phase 6: the written model measured against the real frames.
        layout = read_layout(container.weights, {k: q.shape for k, q in qsd.items()}, s.bits)
        encoded.summary = measure_summary([encoded.render(i) for i in range(len(prepared))],
                                          [to_rgb8(v.frames) for v in sources], [v.fps for v in sources],
                                          size_bytes, weights=WeightsSummary.of(layout))
    if dist.is_main:
        # Phase 7: the file judged, measured or not (codec.guard); warns when it is useless.
        encoded.verdict = check_output(
            None if encoded.summary else [encoded.render(i) for i in range(len(prepared))],
            [to_rgb8(v.frames) for v in sources], [v.fps for v in sources], size_bytes,
            epochs=s.epochs,
            recipe=recipe, summary=encoded.summary)
        warn_if_useless(encoded.verdict)
    return encoded


encode.__doc__ = (encode.__doc__ or "").replace("{settings}", docstring(EncodeSettings).strip())


def _resume_hint(ckpt: Path) -> str:
    if ckpt.exists():
        return (f"interrupted; training so far is saved in '{ckpt}': run the same encode with "
                f"resume=True to continue")
    return ("interrupted; no checkpoint was saved yet (checkpoint_every=N saves one every "
            "N epochs, and resume=True continues from it)")


def load(path: str | os.PathLike, *, max_memory: int | str | None = None,
         frames_at_once: int | Callable[[int], int] | None = None) -> Encoded:
    """Read a .dnerv file and rebuild the quantised model and every video's keyframes.

    Everything the file declares is validated (:mod:`.header`) before anything is built from
    it, and the memory decoding needs (``frames_at_once`` frames per video at a time, or a
    function of the clip length giving them; None: whole videos) is checked against
    ``max_memory`` (:mod:`.memory`; default: a share of the available memory); keyframes are
    decoded later, when a video is rendered, each checked against the size the header gives.
    """
    container = read_container(path)
    head = parse_header(container.header, version=container.version,
                        keyframes=len(container.keyframes), clips_per_pass=RENDER_CHUNK)
    if callable(frames_at_once):
        frames_at_once = frames_at_once(head.config.clip_len)
    sizes = section_sizes(container)   # the bytes read: the file may change after reading
    check_decode_memory(decode_memory(head, sum(sizes.values()), RENDER_CHUNK,
                                      frames=frames_at_once), max_memory, f"'{path}'")
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
    return Encoded(model, videos, head.raw, sum(sizes.values()), sizes)


def parse_frames(text: str | None) -> tuple[int, int | None]:
    """``"A:B"`` (either end may be left out, negative counts from the end) -> (A, B)."""
    if text is None:
        return 0, None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return (int(parts[0]) if parts[0].strip() else 0,
                int(parts[1]) if parts[1].strip() else None)
    except ValueError:
        raise UsageError(f"a frame range is START:STOP (e.g. 0:64, 100:, -8:), got "
                         f"{text!r}") from None


def _output_format(out: str, fmt: str | None) -> tuple[str, bool]:
    """(format, one file?) of a decode output: ``-`` is Y4M on standard output, a name
    ending in .mp4/.yuv/.y4m one file of that format, anything else a folder."""
    single = "y4m" if out == "-" else SUFFIXES.get(Path(out).suffix.lower())
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown output format '{fmt}' (use {', '.join(FORMATS)})")
    if single is not None:
        # mp4 is the folder default (DecodeSettings): a file's extension wins over it.
        if fmt not in (None, "mp4", single):
            raise UsageError(f"output '{out}' is {single} but the format asked for is {fmt}")
        return single, True
    return fmt or "mp4", False


def _write(encoded: Encoded, index: int, writer_target: Path | BinaryIO, fmt: str,
           start: int, stop: int | None, progress: bool) -> None:
    """Stream frames ``start:stop`` of video ``index`` into one output."""
    v = encoded.videos[index]
    _, lo, hi = encoded.frame_range(index, start, stop)
    writer = FrameWriter(fmt, writer_target, v.width, v.height, v.fps, hi - lo,
                         YuvTarget.of(encoded.header["videos"][index]))
    for frames in encoded.stream(index, lo, hi, depth_for(fmt), progress):
        writer.write(frames)
    writer.close()


@locks_output("out_dir")
def decode(path: str | os.PathLike, out_dir: str | os.PathLike, *, fmt: str = "mp4",
           overwrite: bool = False, progress: bool = True, device: str = "auto",
           dtype: str = "fp32", videos: Sequence[str] | None = None,
           frames: str | tuple[int, int | None] | None = None,
           max_memory: int | str | None = None) -> list[Path]:
    """Decode videos of a .dnerv file, clip group by clip group: memory does not grow with
    a video's length.

    ``out_dir``: a folder (each video as ``NAME.mp4``, ``NAME.yuv``, ``NAME.y4m`` or
    ``NAME/`` PNGs by ``fmt``, default mp4), or one file whose extension (.mp4, .yuv,
    .y4m) gives the format, or ``"-"`` for Y4M on standard output; a file or ``-`` takes
    one video (``videos`` names it when the file holds several). mp4 is lossless RGB; .yuv
    and .y4m are the source's YUV layout, 10-bit when it was (an RGB source: 8-bit 4:4:4,
    BT.709, full range; :mod:`dnerv_fast.media.output`). ``videos`` selects videos by name;
    ``frames`` (``"A:B"`` or (A, B)) decodes only the clips covering those frames, which
    are bit-identical to the same frames of a whole decode. Names stored in the file become
    safe file names (:mod:`.names`). A new folder appears only when every video is written;
    with ``overwrite`` an existing folder gains the decoded videos and keeps its other files
    (:func:`~dnerv_fast.atomic.atomic_dir`). The run holds ``<out_dir>.lock``
    (:mod:`dnerv_fast.locks`; not for ``-``): a second run to the same output fails at once.
    ``device`` (``auto``, ``cpu``, ``cuda``) and ``dtype`` (``fp32``, ``bf16``, ``fp16``)
    choose where and in what precision the network runs; only fp32 gives the frames the
    encoder measured, half precision stays within a few hundredths of a dB. ``max_memory``
    (bytes, or a size such as ``"12G"``) overrides the memory budget a file must fit
    (:mod:`.memory`).
    """
    out = str(out_dir)
    fmt, single = _output_format(out, fmt)
    start, stop = parse_frames(frames) if not isinstance(frames, tuple) else frames
    try:
        torch_dtype = parse_dtype(dtype)
    except ValueError as e:
        raise CodecError(str(e)) from e
    target = resolve_device(device)
    if single and out != "-":
        check_file_output(out, overwrite)
    elif not single:
        check_folder_output(out_dir, overwrite)
    encoded = load(path, max_memory=max_memory,
                   frames_at_once=lambda clip_len: clip_len * GROUP_CLIPS)
    chosen = [encoded.index_of(v) for v in videos] if videos else range(len(encoded.videos))
    if single and len(chosen) != 1:
        raise UsageError(f"'{out}' takes one video but the file holds {len(chosen)}; name one "
                         f"(videos=NAME)")
    for i in chosen:
        encoded.frame_range(i, start, stop)       # every range checked before any work
    encoded.model.to(target, torch_dtype)
    if single:
        if out == "-":
            _write(encoded, chosen[0], sys.stdout.buffer, fmt, start, stop, progress)
            return []
        with atomic_path(out, overwrite) as tmp:
            _write(encoded, chosen[0], tmp, fmt, start, stop, progress)
        return [Path(out)]
    names = safe_names([v.name for v in encoded.videos])
    entries = {}
    for i in chosen:
        count = len(range(*encoded.frame_range(i, start, stop)[1:]))
        entries[names[i] if fmt == "png" else f"{names[i]}.{fmt}"] = \
            png_names(count) if fmt == "png" else None
    if overwrite:
        check_replaceable(Path(out_dir), entries)
    with atomic_dir(out_dir, overwrite) as tmp:
        for i, entry in zip(chosen, entries):
            _write(encoded, i, tmp / entry, fmt, start, stop, progress)
    return [Path(out_dir) / entry for entry in entries]
