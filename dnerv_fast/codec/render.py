"""Reconstruct videos from a model and decoded keyframes (used by encode, decode and
:class:`dnerv_fast.DNeRVDataset`).

Encoding and decoding call :func:`render_video` with the same chunking, so decoding a file
gives bit-for-bit the frames the quantised model gives in memory right after encoding, on the
same machine with the same fused-op backend and thread count. Float convolutions summed in
another order (another thread count, backend, CPU, or another batch of clips around the same
clip) can move an occasional pixel by one 8-bit level (measured: 1 value in 684k between 1
and 2 threads).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.printable import printable
from dnerv_fast.tiling import stitch
from dnerv_fast.clips.data import ClipRef, PreparedVideo, make_batch
from dnerv_fast.clips.decoder import run_batch

RENDER_CHUNK = 8  # clips per forward pass; consecutive clips share keyframe encodings


@torch.inference_mode()
def render_clips(model: DNeRV, videos: list[PreparedVideo], index: int, clips: Sequence[int],
                 chunk: int = RENDER_CHUNK, device: torch.device | str = "cpu",
                 progress: bool = False) -> torch.Tensor:
    """uint8 frames [N, 3, H, W] on ``device``: the real (unmasked) frames of the schedule
    clips ``clips`` of video ``index``, in the order given, stitched and cropped to its size.

    Every patch of every clip is decoded, ``chunk`` (patch, clip) pairs per forward pass,
    patch-major so that neighbouring clips of one patch share their keyframe encodings.
    """
    video = videos[index]
    selected = [video.clips[c] for c in clips]
    offsets, n = [], 0
    for clip in selected:
        offsets.append(n)
        n += sum(clip.mask)            # real frames come first; padding slots trail
    ph, pw = video.grid.patch_h, video.grid.patch_w
    patches = torch.zeros(video.patches, n, 3, ph, pw, dtype=torch.uint8, device=device)
    refs = [(ClipRef(index, p, clip.index), offset) for p in range(video.patches)
            for clip, offset in zip(selected, offsets)]
    model.eval()
    for i in tqdm(range(0, len(refs), chunk), desc=f"render {printable(video.name)}",
                  disable=not progress, leave=False):
        part = refs[i:i + chunk]
        batch = make_batch(videos, [ref for ref, _ in part], model.config, with_target=False)
        # Scale in fp32: a half-precision model's output has too few bits for 255 * x.
        out = run_batch(model, batch).float().mul_(255).round_().to(device, torch.uint8)  # [B,3,T,ph,pw]
        for (ref, offset), frames in zip(part, out):
            real = sum(video.clips[ref.clip].mask)
            patches[ref.patch, offset:offset + real] = frames[:, :real].permute(1, 0, 2, 3)
    return stitch(patches, video.grid)


def render_video(model: DNeRV, videos: list[PreparedVideo], index: int,
                 chunk: int = RENDER_CHUNK, progress: bool = False) -> np.ndarray:
    """uint8 frames [N, H, W, 3] of video ``index``, stitched and cropped to its size."""
    frames = render_clips(model, videos, index, range(len(videos[index].clips)), chunk,
                          progress=progress)
    return frames.permute(0, 2, 3, 1).contiguous().numpy()
