"""Reconstruct whole videos from a model and decoded keyframes (used by encode and decode).

Both sides call this same function with the same chunking, so decoding a file gives
bit-for-bit the frames the quantised model gives in memory right after encoding, on the same
machine with the same fused-op backend and thread count. Float convolutions summed in another
order (another thread count, backend or CPU) can move an occasional pixel by one 8-bit level
(measured: 1 value in 684k between 1 and 2 threads).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.tiling import stitch
from dnerv_fast.train.data import ClipRef, PreparedVideo, make_batch
from dnerv_fast.train.forward import run_batch

RENDER_CHUNK = 8  # clips per forward pass; consecutive clips share keyframe encodings


@torch.no_grad()
def render_video(model: DNeRV, videos: list[PreparedVideo], index: int,
                 chunk: int = RENDER_CHUNK, progress: bool = False) -> np.ndarray:
    """uint8 frames [N, H, W, 3] of video ``index``, stitched and cropped to its size."""
    video = videos[index]
    ph, pw = video.grid.patch_h, video.grid.patch_w
    patches = torch.zeros(video.patches, video.length, 3, ph, pw, dtype=torch.uint8)
    refs = [ClipRef(index, p, c.index) for p in range(video.patches) for c in video.clips]
    model.eval()
    for i in tqdm(range(0, len(refs), chunk), desc=f"render {video.name}", disable=not progress,
                  leave=False):
        part = refs[i:i + chunk]
        out = run_batch(model, make_batch(videos, part, model.config, with_target=False))
        out = out.mul(255).round_().to(torch.uint8).cpu()          # [B, 3, T, ph, pw]
        for ref, frames in zip(part, out):
            clip = video.clips[ref.clip]
            keep = [s for s, m in enumerate(clip.mask) if m]
            patches[ref.patch, [clip.frames[s] for s in keep]] = frames[:, keep].permute(1, 0, 2, 3)
    return stitch(patches, video.grid).permute(0, 2, 3, 1).contiguous().numpy()
