"""The training loop: AdamW, warm-up + cosine schedule, progress bar, resumable checkpoints."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm import tqdm

from dnerv_fast.codec.errors import CodecError
from dnerv_fast.metrics import psnr
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from dnerv_fast.train.data import PreparedVideo, all_clips, make_batch
from dnerv_fast.train.forward import run_batch
from dnerv_fast.train.loss import LOSSES, masked_frames, reconstruction_loss
from dnerv_fast.train.schedule import learning_rate


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
        if self.epochs < 1:
            raise CodecError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise CodecError(f"batch size must be at least 1, got {self.batch_size}")
        if self.lr <= 0 or not 0 <= self.warmup < 1:
            raise CodecError(f"need lr > 0 and warm-up in [0, 1), got {self.lr}, {self.warmup}")
        if self.loss not in LOSSES:
            raise CodecError(f"unknown loss '{self.loss}'; choose one of: {', '.join(LOSSES)}")


def _fingerprint(model: DNeRV, videos: list[PreparedVideo], s: TrainSettings) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: settings, model shape and data."""
    return {"settings": asdict(s), "config": model.config.to_dict(),
            "videos": [(v.name, v.height, v.width, v.length) for v in videos],
            "keyframes": [sum(len(b) for b in v.key_bytes) for v in videos]}


def train(model: DNeRV, videos: list[PreparedVideo], settings: TrainSettings,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 0,
          resume: bool = False, progress: bool = True) -> list[dict[str, float]]:
    """Train ``model`` in place on every clip of every patch of ``videos``.

    Checkpoints go to ``checkpoint`` every ``checkpoint_every`` epochs (0: never) and after
    the last epoch; ``resume`` continues from it. Returns per-epoch mean loss and PSNR.
    """
    settings.validate()
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
        state = load_checkpoint(checkpoint, fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        sampler.set_state(state["sampler"])
        first, history = state["epoch"], state["history"]
    else:
        torch.manual_seed(settings.seed)
    model.train()
    for epoch in range(first, settings.epochs):
        order = torch.randperm(len(refs), generator=sampler).tolist()
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{settings.epochs}", disable=not progress,
                   leave=False)
        loss_sum, psnr_sum, frames = 0.0, 0.0, 0
        for step in bar:
            lr = learning_rate((epoch + step / steps) / settings.epochs, settings.lr,
                               settings.warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = make_batch(videos, [refs[i] for i in
                                        order[step * settings.batch_size:(step + 1) * settings.batch_size]],
                               config)
            output = run_batch(model, batch)
            mask = batch.inputs.mask
            loss = reconstruction_loss(output, batch.target, mask, settings.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            p = psnr(masked_frames(output, mask), masked_frames(batch.target, mask))
            loss_value = loss.item()
            loss_sum += loss_value * len(p)
            psnr_sum += float(p.clamp(max=100).sum())
            frames += len(p)
            bar.set_postfix(loss=f"{loss_value:.4f}", psnr=f"{psnr_sum / frames:.2f}", lr=f"{lr:.2e}")
        history.append({"epoch": epoch + 1, "loss": loss_sum / frames, "psnr": psnr_sum / frames})
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{settings.epochs}: loss {loss_sum / frames:.4f}, "
                       f"PSNR {psnr_sum / frames:.2f} dB")
        last = epoch + 1 == settings.epochs
        if checkpoint is not None and (last or (checkpoint_every and (epoch + 1) % checkpoint_every == 0)):
            save_checkpoint(checkpoint, model, optimizer, epoch + 1, fingerprint, sampler, history)
    model.eval()
    return history
