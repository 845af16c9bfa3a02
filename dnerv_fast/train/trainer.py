"""The training loop: AdamW, warm-up + cosine schedule, progress bar, resumable checkpoints.

Under torchrun every process draws the same clip order from the seeded sampler and trains on
its own share of each global batch (``batch_size`` clips over all processes). The loss is
divided by counts summed over all processes and scaled by their number, so the gradients
DistributedDataParallel averages are the gradients of one process on the whole batch (see
:mod:`dnerv_fast.train.loss`). A process whose share is empty (a last batch smaller than the
number of processes) still runs a clip, with weight zero, because every process must take
part in each gradient exchange.

Built for the GPU: the data lives on the device (:mod:`dnerv_fast.train.resident`), or is
streamed to it in chunks when it does not fit (:mod:`dnerv_fast.train.streamed`; the choice
is :mod:`dnerv_fast.train.placement`'s, and a streamed run says so first); the
``host`` data path, :func:`~dnerv_fast.clips.data.make_batch` per step, is the reference it
is tested against), and the host waits for the device only every ``sync_every`` steps and at
the end of each epoch: losses and PSNR are summed on the device, and the progress bar and
the divergence check read them then.
"""
from __future__ import annotations

import math
import os
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch
from tqdm import tqdm

from dnerv_fast.errors import CheckpointError, TrainingDiverged, UsageError
from dnerv_fast.metrics import psnr
from dnerv_fast.options import EncodeSettings, option
from dnerv_fast.progress import progress_bar
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from dnerv_fast.clips.data import Batch, ClipRef, PreparedVideo, all_clips, make_batch
from dnerv_fast.train.distributed import Distributed
from dnerv_fast.clips.decoder import ClipDecoder, run_batch
from dnerv_fast.train.loss import LossSums, loss_sums, masked_frames
from dnerv_fast.train.lr_schedule import learning_rate
from dnerv_fast.train.mixed import Mixed, make_optimizer
from dnerv_fast.train.placement import DATA_PATHS, place_data
from dnerv_fast.train.streamed import StreamedClips
from dnerv_fast.validation import check_choice, check_int, check_number


MAX_SYNC_EVERY = 100_000
# Settings that change how fast a run goes, not what it computes: resuming may change them.
_RUN_ONLY = ("sync_every", "compile", "data", "data_memory")


@dataclass
class TrainSettings:
    """Optimisation settings; the defaults are the paper's (batch size aside). The settings
    ``encode`` shares with it are defined, with their bounds, in
    :class:`dnerv_fast.options.EncodeSettings`."""

    epochs: int
    batch_size: int = 8
    lr: float = 5e-4
    warmup: float = 0.2
    loss: str = "uvg"
    seed: int = 0
    precision: str = "fp32"       # the forward's autocast type (train.mixed)
    compile: bool = False         # the clip decoder under torch.compile
    sync_every: int = 50          # steps between host reads of the losses (and epoch ends)
    data: str = "auto"            # "resident", "stream" or "host" (train.placement)
    data_memory: int = 0          # device bytes the data may take (0: half the free memory)

    def validate(self) -> None:
        """Raise :class:`~dnerv_fast.errors.UsageError` naming the first bad setting."""
        for name in ("epochs", "batch_size", "lr", "loss", "seed", "precision", "compile"):
            value = getattr(self, name)
            if value is None:             # encode's None means "the recipe's"; here it is chosen
                raise UsageError(f"{name} must be given")
            option(EncodeSettings, name).check(value)
        check_int("sync_every", self.sync_every, 1, MAX_SYNC_EVERY)
        check_int("data_memory", self.data_memory, 0, 2**62)
        check_choice("data path", self.data, DATA_PATHS)
        check_number("warmup", self.warmup, 0, 1, hi_open=True)


@dataclass(frozen=True)
class LatePhase:
    """A change to the model for the last epochs of one run, under the same optimiser and
    learning-rate schedule (quantisation-aware training: the weights seen through the file's
    quantiser, :mod:`dnerv_fast.codec.qat`).

    ``enter`` applies it to the model and returns how to undo it; it must keep the model's
    parameter objects, which the optimiser holds. ``label`` says, in the progress lines, what
    the training PSNR is measured through.
    """

    start: int                                              # its first epoch, counted from 0
    enter: Callable[[torch.nn.Module], Callable[[], None]]
    label: str


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Every moment tensor loaded into ``optimizer`` has its parameter's shape."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    raise ValueError(f"optimizer state '{name}' has shape {tuple(value.shape)} "
                                     f"for a parameter of shape {tuple(param.shape)}")


def _fingerprint(model: DNeRV, videos: list[PreparedVideo], s: TrainSettings,
                 late: LatePhase | None = None) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: settings, model shape and data.

    fp32 runs leave the precision out, and runs without a late phase its start, so that
    their checkpoints match earlier versions'.
    """
    settings = {k: v for k, v in asdict(s).items() if k not in _RUN_ONLY}
    if s.precision == "fp32":
        del settings["precision"]
    if late is not None:
        settings["late_phase_from"] = late.start
    return {"settings": settings, "config": model.config.to_dict(),
            "videos": [(v.name, v.height, v.width, v.length) for v in videos],
            "keyframes": [sum(len(b) for b in v.key_bytes) for v in videos],
            "masks": [None if v.visible is None else zlib.crc32(v.visible.contiguous().numpy())
                      for v in videos]}


def _psnr_total(output: torch.Tensor, target: torch.Tensor, kept: torch.Tensor,
                visible: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of per-frame PSNR (over visible pixels, capped at 100 dB) and how many frames
    it sums: the unmasked frames with at least one visible pixel. No data-dependent shape:
    frames without a visible pixel are zeroed out of the sum, not dropped."""
    region = None if visible is None else masked_frames(visible, kept)
    p = psnr(masked_frames(output, kept), masked_frames(target, kept), region)
    if region is None:
        return p.clamp(max=100).sum(), p.new_full((), float(len(p)))
    seen = region.flatten(1).sum(1) > 0
    return torch.where(seen, p.clamp(max=100), 0.0).sum(), seen.sum().to(p.dtype)


def _step(net: torch.nn.Module, batch: Batch, kind: str, weight: float, dist: Distributed,
          mixed: Mixed) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward pass on this process's share of a batch: the loss to differentiate, and
    float64 [loss, loss * frames, PSNR sum, frames] of the whole batch, left on the device."""
    with mixed.autocast():
        output = run_batch(net, batch)
    # The loss and its sums in fp32 at least (a float64 model's stay float64).
    output = output.to(torch.promote_types(output.dtype, torch.float32))
    device, dtype = output.device, output.dtype
    assert batch.target is not None and batch.kept is not None, "training batches have targets"
    kept, target = batch.kept.to(device), batch.target.to(device, dtype)
    visible = None if batch.visible is None else batch.visible.to(device, dtype)
    sums = loss_sums(output, target, kept, kind, visible)
    totals = torch.stack([sums.error.detach().double(), sums.dissimilarity.detach().double(),
                          sums.pixels.double(), sums.windows.double(),
                          *_psnr_total(output, target, kept, visible)]) * weight
    error, dissimilarity, pixels, windows, psnr_sum, frames = dist.sum(totals)
    loss = sums.loss(pixels.to(dtype), windows.to(dtype)) * (dist.world_size * weight)
    value = LossSums(kind, error, dissimilarity, pixels, windows).loss()
    return loss, torch.stack([value, value * frames, psnr_sum, frames])


def _shard(batch: list[ClipRef], dist: Distributed) -> tuple[list[ClipRef], float]:
    """This process's clips of a global batch and their weight (0: a stand-in clip)."""
    share = dist.shard(batch)
    return (share, 1.0) if share else (batch[:1], 0.0)


def _host_batches(videos: list[PreparedVideo], refs: list[ClipRef], order: list[int],
                  size: int, config: Any, dist: Distributed) -> Iterator[tuple[Batch, float]]:
    """The reference data path: each batch built on the host when its step comes."""
    for first in range(0, len(order), size):
        share, weight = _shard([refs[i] for i in order[first:first + size]], dist)
        yield make_batch(videos, share, config), weight


@dataclass
class _Run:
    """The state of one training run, shared by its phases."""

    model: DNeRV
    videos: list[PreparedVideo]
    settings: TrainSettings
    dist: Distributed
    device: torch.device
    refs: list[ClipRef]
    steps: int                                  # per epoch
    optimizer: torch.optim.Optimizer
    sampler: torch.Generator                    # the clip order
    fingerprint: dict[str, Any]
    late: LatePhase | None
    history: list[dict[str, float]] = field(default_factory=list)
    first_epoch: int = 0
    mixed: Mixed | None = None
    clips: Any = None                           # resident or streamed clips; None: host path
    net: torch.nn.Module | None = None


def _start(model: DNeRV, videos: list[PreparedVideo], settings: TrainSettings,
           dist: Distributed | None, late: LatePhase | None) -> _Run:
    """Phase 1: settings checked, optimiser and clip sampler made."""
    settings.validate()
    device = next(model.parameters()).device
    dist = dist or Distributed(device=device)
    refs = all_clips(videos)
    optimizer = make_optimizer(model.parameters(), settings.lr, settings.precision, device)
    sampler = torch.Generator().manual_seed(settings.seed)
    if late is not None and not 0 < late.start < settings.epochs:
        raise UsageError(f"the late phase must start within the epochs 1..{settings.epochs - 1}, "
                         f"got {late.start}")
    return _Run(model, videos, settings, dist, device, refs, -(-len(refs) // settings.batch_size),
                optimizer, sampler, _fingerprint(model, videos, settings, late), late)


def _restore(run: _Run, checkpoint: str | os.PathLike | None, resume: bool) -> None:
    """Phase 2: the state of a checkpoint (``resume``) or a fresh seed, then the precision's
    loss scaler."""
    scaler: dict[str, Any] = {}
    if resume:
        if checkpoint is None:
            raise UsageError("resuming needs a checkpoint path")
        state = load_checkpoint(checkpoint, run.fingerprint, run.model)
        try:
            run.model.load_state_dict(state["model"])
            run.optimizer.load_state_dict(state["optimizer"])
            _check_optimizer_state(run.optimizer)
            scaler = state.get("scaler", {})
            set_rng_state(state["rng"])
            run.sampler.set_state(state["sampler"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint '{checkpoint}' is damaged: {e}") from e
        run.first_epoch, run.history = state["epoch"], state["history"]
    else:
        torch.manual_seed(run.settings.seed)
    run.mixed = Mixed(run.settings.precision, run.device)
    try:
        run.mixed.load_state_dict(scaler)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint '{checkpoint}' is damaged: scaler state {e}") from e


def _place(run: _Run, decoder: torch.nn.Module | None, progress: bool) -> None:
    """Phase 3: the data on the device (or streamed), the network wrapped and compiled."""
    s = run.settings
    run.clips = place_data(run.videos, run.model.config, run.device, s.data, s.data_memory)
    net = run.dist.wrap(decoder if decoder is not None else ClipDecoder(run.model))
    run.net = torch.compile(net) if s.compile else net
    if progress and isinstance(run.clips, StreamedClips):
        tqdm.write(run.clips.describe())


def _epoch(run: _Run, epoch: int, bar: Any) -> list[float]:
    """Phase 4, once per epoch: every step of one pass over the clips. Returns the epoch's
    sums [loss * frames, PSNR, frames]."""
    s, dist = run.settings, run.dist
    order = torch.randperm(len(run.refs), generator=run.sampler).tolist()
    bar.set_description(f"epoch {epoch + 1}/{s.epochs}")
    batches = run.clips.epoch(order, s.batch_size, dist.rank, dist.world_size) \
        if run.clips is not None else \
        _host_batches(run.videos, run.refs, order, s.batch_size, run.model.config, dist)
    totals = torch.zeros(3, dtype=torch.float64, device=run.device)  # loss*frames, PSNR, frames
    window: list[torch.Tensor] = []        # losses of the steps since the last sync
    sums: list[float] = [0.0, 0.0, 0.0]
    for step, (batch, weight) in enumerate(batches):
        lr = learning_rate((epoch + step / run.steps) / s.epochs, s.lr, s.warmup)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        loss, done = _step(run.net, batch, s.loss, weight, dist, run.mixed)
        run.mixed.step(loss, run.optimizer)
        window.append(done[0])
        totals += done[1:]
        if len(window) == s.sync_every or step + 1 == run.steps:
            losses, sums = _sync(window, totals)
            _check_finite(losses, epoch, step + 1 - len(losses), s.lr)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", patch_psnr=f"{sums[1] / max(sums[2], 1):.2f}",
                            lr=f"{lr:.2e}", refresh=False)
            bar.update(len(window))
            window = []
    return sums


def _end_epoch(run: _Run, epoch: int, sums: list[float], in_late_phase: bool, progress: bool,
               checkpoint: str | os.PathLike | None, checkpoint_every: int) -> None:
    """Phase 5, once per epoch: the epoch's figures recorded and shown, a checkpoint saved
    when one is due (never inside the late phase)."""
    s, late = run.settings, run.late
    loss_sum, psnr_sum, frames = sums
    frames = max(frames, 1)
    run.history.append({"epoch": epoch + 1, "loss": loss_sum / frames, "psnr": psnr_sum / frames})
    if progress:
        seen = late.label if in_late_phase and late is not None else \
            "float weights, before quantisation"
        tqdm.write(f"epoch {epoch + 1}/{s.epochs}: loss {loss_sum / frames:.4f}, "
                   f"PSNR {psnr_sum / frames:.2f} dB on the training patches ({seen})")
    # The last checkpoint is the last epoch before the late phase, or the run's end.
    last = epoch + 1 == (s.epochs if late is None else late.start)
    if checkpoint is not None and run.dist.is_main and not in_late_phase and \
            (last or (checkpoint_every and (epoch + 1) % checkpoint_every == 0)):
        save_checkpoint(checkpoint, run.model, run.optimizer, epoch + 1, run.fingerprint,
                        run.sampler, run.history, run.mixed.state_dict())


def train(model: DNeRV | torch.nn.Module, videos: list[PreparedVideo], settings: TrainSettings,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 0,
          resume: bool = False, progress: bool = True,
          dist: Distributed | None = None, late: LatePhase | None = None,
          decoder: torch.nn.Module | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place on every clip of every patch of ``videos``.

    The model stays on its device (the data goes to it once, or per batch with
    ``settings.data == "host"``). Checkpoints go to ``checkpoint`` every
    ``checkpoint_every`` epochs (0: never) and after the last epoch, written by the main
    process only; ``resume`` continues from it (every process reads it). ``dist`` describes
    the data-parallel processes (None: this one alone). ``late`` (:class:`LatePhase`) changes
    the model for the epochs from ``late.start`` on; those epochs are not checkpointed: the
    last checkpoint is the one before them, so resuming runs the phase again. ``decoder``:
    the module a batch runs through, with :class:`~dnerv_fast.clips.decoder.ClipDecoder`'s
    forward, around ``model`` (default: that one; the NeRV baseline's is
    :class:`~dnerv_fast.clips.decoder.FrameIndexDecoder`). Returns per-epoch mean loss and
    PSNR (over visible pixels), the same on every process.
    """
    run = _start(model, videos, settings, dist, late)
    _restore(run, checkpoint, resume)
    progress = progress and run.dist.is_main
    _place(run, decoder, progress)
    model.train()
    # One bar over every step left, so that its rate and ETA are those of the whole run.
    bar = progress_bar(total=(settings.epochs - run.first_epoch) * run.steps, unit="step",
                       disable=not progress, leave=False)
    undo: Callable[[], None] | None = None
    try:
        for epoch in range(run.first_epoch, settings.epochs):
            if late is not None and undo is None and epoch >= late.start:
                undo = late.enter(model)
            sums = _epoch(run, epoch, bar)
            _end_epoch(run, epoch, sums, undo is not None, progress, checkpoint,
                       checkpoint_every)
    finally:
        if undo is not None:
            undo()
    bar.close()
    model.eval()
    return run.history


def _sync(window: list[torch.Tensor], totals: torch.Tensor) -> tuple[list[float], list[float]]:
    """The window's step losses and the epoch's running sums, read in one transfer."""
    values = torch.cat([torch.stack(window), totals]).tolist()
    return values[:len(window)], values[len(window):]


def _check_finite(losses: list[float], epoch: int, first_step: int, lr: float) -> None:
    """Raise :class:`TrainingDiverged` for the first non-finite loss of a window."""
    for i, value in enumerate(losses):
        if not math.isfinite(value):
            raise TrainingDiverged(f"training diverged in epoch {epoch + 1}, step "
                                   f"{first_step + i + 1} (loss {value}); try a lower lr= "
                                   f"(now {lr:g})")
