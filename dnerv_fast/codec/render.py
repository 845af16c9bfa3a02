"""Reconstruct videos from a model and decoded keyframes (used by encode, decode and
:class:`dnerv_fast.DNeRVDataset`).

Encoding and decoding render through :func:`render_range` with the same groups and
chunking, so decoding a file (whole, by frame range, or streamed) gives bit-for-bit the
frames the quantised model gives in memory right after encoding, on the same machine with
the same fused-op backend and thread count. Float convolutions summed in another order
(another thread count, backend, CPU, or another batch of clips around the same clip) can
move an occasional pixel by one 8-bit level.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from dnerv_fast.progress import progress_bar

from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.printable import printable
from dnerv_fast.tiling import stitch
from dnerv_fast.clips.data import ClipRef, PreparedVideo, make_batch
from dnerv_fast.clips.decoder import run_batch

RENDER_CHUNK = 8  # clips per forward pass; consecutive clips share keyframe encodings
# Clips rendered together, then handed on: what a streaming decoder holds at once. Every
# render (a whole video, a frame range, a stream) runs the same groups through the same
# batches, so a frame's pixels do not depend on which frames were asked for.
GROUP_CLIPS = RENDER_CHUNK
DEPTHS = {8: torch.uint8, 16: torch.uint16}   # output bits: 8-bit RGB, or 16-bit (value / 65535)


@torch.inference_mode()
def render_clips(model: DNeRV, videos: list[PreparedVideo], index: int, clips: Sequence[int],
                 chunk: int = RENDER_CHUNK, device: torch.device | str = "cpu",
                 progress: bool = False, depth: int = 8) -> torch.Tensor:
    """Frames [N, 3, H, W] on ``device``, uint8 (``depth`` 8) or uint16 scaled to 65535
    (``depth`` 16, for output deeper than 8 bits): the real (unmasked) frames of the
    schedule clips ``clips`` of video ``index``, in the order given, stitched and cropped
    to its size.

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
    dtype, peak = DEPTHS[depth], (1 << depth) - 1
    patches = torch.zeros(video.patches, n, 3, ph, pw, dtype=dtype, device=device)
    refs = [(ClipRef(index, p, clip.index), offset) for p in range(video.patches)
            for clip, offset in zip(selected, offsets)]
    model.eval()
    for i in progress_bar(range(0, len(refs), chunk), desc=f"render {printable(video.name)}",
                          disable=not progress, leave=False):
        part = refs[i:i + chunk]
        batch = make_batch(videos, [ref for ref, _ in part], model.config, with_target=False)
        # Scale in fp32: a half-precision model's output has too few bits for 255 * x.
        out = run_batch(model, batch).float().mul_(peak).round_().to(device, dtype)  # [B,3,T,ph,pw]
        for (ref, offset), frames in zip(part, out):
            real = sum(video.clips[ref.clip].mask)
            patches[ref.patch, offset:offset + real] = frames[:, :real].permute(1, 0, 2, 3)
    return stitch(patches, video.grid)


def clip_groups(video: PreparedVideo, start: int = 0, stop: int | None = None) -> list[range]:
    """The groups of :data:`GROUP_CLIPS` clips that hold frames ``start:stop``."""
    stop = video.length if stop is None else stop
    clip_len = len(video.clips[0].frames)
    first, last = start // clip_len // GROUP_CLIPS, (stop - 1) // clip_len // GROUP_CLIPS
    return [range(g * GROUP_CLIPS, min((g + 1) * GROUP_CLIPS, len(video.clips)))
            for g in range(first, last + 1)]


def _window(video: PreparedVideo, clips: range) -> PreparedVideo:
    """``video`` restricted to the keyframes of ``clips``: decoding a group decodes only its
    own keyframes, so memory does not grow with the video's length."""
    keys = sorted({k for c in clips for k in (video.clips[c].start_key, video.clips[c].end_key)})
    slots = [video.key_slot(k) for k in keys]
    held = video._keyframes
    return dataclasses.replace(
        video, key_indices=keys, key_bytes=[video.key_bytes[s] for s in slots],
        frames=None, visible=None, _keyframes=None if held is None else held[:, slots])


def render_range(model: DNeRV, videos: list[PreparedVideo], index: int, start: int = 0,
                 stop: int | None = None, depth: int = 8, chunk: int = RENDER_CHUNK,
                 progress: bool = False) -> Iterator[np.ndarray]:
    """Frames ``start:stop`` of video ``index`` as [n, H, W, 3] arrays (uint8, or uint16 for
    ``depth`` 16), one group of clips at a time; only the clips covering the range run."""
    video = videos[index]
    stop = video.length if stop is None else stop
    if not 0 <= start < stop <= video.length:
        raise ValueError(f"frames {start}:{stop} are not a non-empty range of the "
                         f"{video.length} frames of '{video.name}'")
    clip_len = len(video.clips[0].frames)
    groups = clip_groups(video, start, stop)
    bar = progress_bar(total=stop - start, desc=f"render {video.name}", unit="frame",
                       disable=not progress, leave=False)
    try:
        for group in groups:
            view = list(videos)
            view[index] = _window(video, group)
            frames = render_clips(model, view, index, group, chunk, depth=depth)
            first = group.start * clip_len
            lo, hi = max(start - first, 0), min(stop - first, len(frames))
            bar.update(hi - lo)
            yield frames[lo:hi].permute(0, 2, 3, 1).contiguous().numpy()
    finally:
        bar.close()


def render_video(model: DNeRV, videos: list[PreparedVideo], index: int,
                 chunk: int = RENDER_CHUNK, progress: bool = False, depth: int = 8) -> np.ndarray:
    """Frames [N, H, W, 3] of video ``index`` (uint8, or uint16 for ``depth`` 16), stitched
    and cropped to its size: :func:`render_range` over the whole video, gathered."""
    return np.concatenate(list(render_range(model, videos, index, depth=depth, chunk=chunk,
                                            progress=progress)))
