"""The training loop: AdamW, warm-up + cosine schedule, progress bar, resumable checkpoints.

Under torchrun every process draws the same clip order from the seeded sampler and trains on
its own share of each global batch (``batch_size`` clips over all processes). The loss is
divided by counts summed over all processes and scaled by their number, so the gradients
DistributedDataParallel averages are the gradients of one process on the whole batch (see
:mod:`dnerv_fast.train.loss`). A process whose share is empty (a last batch smaller than the
number of processes) still runs a clip, with weight zero, because every process must take
part in each gradient exchange.
"""
from __future__ import annotations

import math
import os
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm import tqdm

from dnerv_fast.errors import CheckpointError, CodecError
from dnerv_fast.metrics import psnr
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from dnerv_fast.clips.data import Batch, ClipRef, PreparedVideo, all_clips, make_batch
from dnerv_fast.train.distributed import Distributed
from dnerv_fast.clips.decoder import ClipDecoder, run_batch
from dnerv_fast.train.loss import LossSums, check_loss, loss_sums, masked_frames
from dnerv_fast.train.lr_schedule import learning_rate


# AdamW steps every weight by about lr at first: a rate near 1 destroys any network here.
MAX_LR = 1.0
MAX_EPOCHS = 1_000_000
MAX_BATCH = 65536


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CodecError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


@dataclass
class TrainSettings:
    """Optimisation settings; the defaults are the paper's (batch size aside)."""

    epochs: int
    batch_size: int = 8
    lr: float = 5e-4
    warmup: float = 0.2
    loss: str = "uvg"
    seed: int = 0

    def validate(self) -> None:
        _check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        _check_int("batch size", self.batch_size, 1, MAX_BATCH)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        if not _is_number(self.lr) or not 0 < self.lr <= MAX_LR:
            raise CodecError(f"the learning rate must be a number in (0, {MAX_LR:g}], got {self.lr}")
        if not _is_number(self.warmup) or not 0 <= self.warmup < 1:
            raise CodecError(f"the warm-up share must be in [0, 1), got {self.warmup}")
        check_loss(self.loss)


class TrainingDiverged(CodecError):
    """The loss became NaN or infinite."""


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Every moment tensor loaded into ``optimizer`` has its parameter's shape."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    raise ValueError(f"optimizer state '{name}' has shape {tuple(value.shape)} "
                                     f"for a parameter of shape {tuple(param.shape)}")


def _fingerprint(model: DNeRV, videos: list[PreparedVideo], s: TrainSettings) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: settings, model shape and data."""
    return {"settings": asdict(s), "config": model.config.to_dict(),
            "videos": [(v.name, v.height, v.width, v.length) for v in videos],
            "keyframes": [sum(len(b) for b in v.key_bytes) for v in videos],
            "masks": [None if v.visible is None else zlib.crc32(v.visible.numpy())
                      for v in videos]}


@dataclass
class _Step:
    """What one optimisation step reports, summed over all processes."""

    loss: float
    psnr_sum: float
    frames: int


def _psnr_total(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                visible: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of per-frame PSNR (over visible pixels, capped at 100 dB) and how many frames
    it sums: the unmasked frames with at least one visible pixel."""
    region = None if visible is None else masked_frames(visible, mask)
    p = psnr(masked_frames(output, mask), masked_frames(target, mask), region)
    if region is not None:
        p = p[region.flatten(1).sum(1) > 0]
    return p.clamp(max=100).sum(), torch.tensor(len(p), dtype=p.dtype, device=p.device)


def _step(net: torch.nn.Module, batch: Batch, kind: str, weight: float,
          dist: Distributed) -> tuple[torch.Tensor, _Step]:
    """Forward pass on this process's share of a batch: the loss to differentiate, and what
    the whole batch reports."""
    output = run_batch(net, batch)
    device, dtype = output.device, output.dtype
    mask, target = batch.inputs.mask.to(device), batch.target.to(device, dtype)
    visible = None if batch.visible is None else batch.visible.to(device, dtype)
    sums = loss_sums(output, target, mask, kind, visible)
    totals = torch.stack([sums.error.detach().double(), sums.dissimilarity.detach().double(),
                          sums.pixels.double(), sums.windows.double(),
                          *_psnr_total(output, target, mask, visible)]) * weight
    error, dissimilarity, pixels, windows, psnr_sum, frames = dist.sum(totals)
    loss = sums.loss(pixels.to(dtype), windows.to(dtype)) * (dist.world_size * weight)
    value = LossSums(kind, error, dissimilarity, pixels, windows).loss()
    return loss, _Step(value.item(), psnr_sum.item(), int(frames.item()))


def _shard(batch: list[ClipRef], dist: Distributed) -> tuple[list[ClipRef], float]:
    """This process's clips of a global batch and their weight (0: a stand-in clip)."""
    share = dist.shard(batch)
    return (share, 1.0) if share else (batch[:1], 0.0)


def train(model: DNeRV, videos: list[PreparedVideo], settings: TrainSettings,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 0,
          resume: bool = False, progress: bool = True,
          dist: Distributed | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place on every clip of every patch of ``videos``.

    The model stays on its device (batches are moved to it). Checkpoints go to
    ``checkpoint`` every ``checkpoint_every`` epochs (0: never) and after the last epoch,
    written by the main process only; ``resume`` continues from it (every process reads it).
    ``dist`` describes the data-parallel processes (None: this one alone). Returns per-epoch
    mean loss and PSNR (over visible pixels), the same on every process.
    """
    settings.validate()
    dist = dist or Distributed(device=next(model.parameters()).device)
    refs = all_clips(videos)
    config = model.config
    steps = -(-len(refs) // settings.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.999),
                                  weight_decay=0.0)
    sampler = torch.Generator().manual_seed(settings.seed)
    fingerprint = _fingerprint(model, videos, settings)
    history: list[dict[str, float]] = []
    first = 0
    if resume:
        if checkpoint is None:
            raise CodecError("resuming needs a checkpoint path")
        state = load_checkpoint(checkpoint, fingerprint, model)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            _check_optimizer_state(optimizer)
            set_rng_state(state["rng"])
            sampler.set_state(state["sampler"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint '{checkpoint}' is damaged: {e}") from e
        first, history = state["epoch"], state["history"]
    else:
        torch.manual_seed(settings.seed)
    net = dist.wrap(ClipDecoder(model))
    progress = progress and dist.is_main
    model.train()
    # One bar over every step left, so that its rate and ETA are those of the whole run.
    bar = tqdm(total=(settings.epochs - first) * steps, unit="step", disable=not progress,
               leave=False)
    for epoch in range(first, settings.epochs):
        order = torch.randperm(len(refs), generator=sampler).tolist()
        bar.set_description(f"epoch {epoch + 1}/{settings.epochs}")
        loss_sum, psnr_sum, frames = 0.0, 0.0, 0
        for step in range(steps):
            lr = learning_rate((epoch + step / steps) / settings.epochs, settings.lr,
                               settings.warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            chosen = order[step * settings.batch_size:(step + 1) * settings.batch_size]
            share, weight = _shard([refs[i] for i in chosen], dist)
            loss, done = _step(net, make_batch(videos, share, config), settings.loss, weight, dist)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if not math.isfinite(done.loss):
                raise TrainingDiverged(f"training diverged in epoch {epoch + 1}, step {step + 1} "
                                       f"(loss {done.loss}); try a lower --lr (now {settings.lr:g})")
            loss_sum += done.loss * done.frames
            psnr_sum += done.psnr_sum
            frames += done.frames
            bar.set_postfix(loss=f"{done.loss:.4f}", patch_psnr=f"{psnr_sum / max(frames, 1):.2f}",
                            lr=f"{lr:.2e}", refresh=False)
            bar.update()
        frames = max(frames, 1)
        history.append({"epoch": epoch + 1, "loss": loss_sum / frames, "psnr": psnr_sum / frames})
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{settings.epochs}: loss {loss_sum / frames:.4f}, "
                       f"PSNR {psnr_sum / frames:.2f} dB on the training patches (float "
                       f"weights, before quantisation)")
        last = epoch + 1 == settings.epochs
        if checkpoint is not None and dist.is_main and \
                (last or (checkpoint_every and (epoch + 1) % checkpoint_every == 0)):
            save_checkpoint(checkpoint, model, optimizer, epoch + 1, fingerprint, sampler, history)
    bar.close()
    model.eval()
    return history
