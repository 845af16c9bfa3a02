"""Prepared videos and clip batches for training and for rendering a model's output.

A :class:`PreparedVideo` holds one source video cut into patch sequences (each patch
position is its own video, as in the paper's reference code) with its keyframes decoded from the bytes the
keyframe codec made: the network is trained on, and decodes from, exactly the keyframes the
file stores. Keyframes are coded once per video at the original frame size (one image per
keyframe index, shared by the two clips that use it and by all patches), then tiled. For
inpainting, a visibility mask is tiled the same way and batched with the targets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dnerv_fast.media.keyframes import decode_keyframe
from dnerv_fast.configs import ModelConfig
from dnerv_fast.schedule import Clip, ClipBatch, clip_inputs, clip_schedule, keyframe_indices
from dnerv_fast.tiling import PatchGrid, patch_grid, tile
from dnerv_fast.media.planar import RGB16_PEAK, to_rgb8
from dnerv_fast.media.video_io import Video


def _to_patches(frames: np.ndarray, grid: PatchGrid) -> torch.Tensor:
    """[N, H, W, C] -> [P, N, C, ph, pw], same dtype."""
    return tile(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2), grid)


@dataclass
class PreparedVideo:
    """One video ready for the network; ``frames`` is None when only decoding."""

    name: str
    height: int
    width: int
    length: int
    fps: float
    grid: PatchGrid
    clips: list[Clip]
    key_indices: list[int]
    key_bytes: list[bytes]
    codec: str                           # the keyframe codec that made ``key_bytes``
    frames: torch.Tensor | None = None   # uint8 or uint16 [P, N, 3, ph, pw], training targets
    visible: torch.Tensor | None = None  # bool [P, N, 1, ph, pw]; None: no pixel is hidden
    _keyframes: torch.Tensor | None = field(default=None, repr=False)

    @property
    def patches(self) -> int:
        return self.grid.count

    @property
    def keyframes(self) -> torch.Tensor:
        """uint8 [P, K, 3, ph, pw]: the keyframes decoded from ``key_bytes``.

        Decoded on first use, so that opening a file of many videos decodes none of them;
        :meth:`release_keyframes` frees them again (a reader of many videos bounds memory so).
        """
        if self._keyframes is None:
            decoded = [decode_keyframe(b, self.codec, (self.height, self.width)) for b in self.key_bytes]
            self._keyframes = _to_patches(np.stack(decoded), self.grid)
        return self._keyframes

    def release_keyframes(self) -> None:
        self._keyframes = None

    def key_slot(self, frame: int) -> int:
        return self.key_indices.index(frame)


def _prepared(name: str, height: int, width: int, length: int, fps: float,
              config: ModelConfig, key_bytes: list[bytes], codec: str,
              frames: np.ndarray | None) -> PreparedVideo:
    grid = patch_grid(height, width, config.patch_size, fit="pad")
    return PreparedVideo(
        name=name, height=height, width=width, length=length, fps=fps, grid=grid,
        clips=clip_schedule(length, config.clip_len),
        key_indices=keyframe_indices(length, config.clip_len), key_bytes=key_bytes,
        codec=codec,
        frames=None if frames is None else _to_patches(frames, grid))


def keyframe_images(video: Video, config: ModelConfig) -> list[np.ndarray]:
    """The frames uint8 [H, W, 3] of ``video`` that are coded as keyframes, in file order
    (a 16-bit source's rounded to 8 bits: keyframe codecs take 8-bit RGB)."""
    return [to_rgb8(video.frames[k]) for k in keyframe_indices(video.num_frames, config.clip_len)]


def prepare_video(video: Video, config: ModelConfig, codec: str, key_bytes: list[bytes],
                  holes: np.ndarray | None = None,
                  decoded: list[np.ndarray] | None = None) -> PreparedVideo:
    """Training data of ``video``: its keyframes (``key_bytes``, the coded
    :func:`keyframe_images`), its frames and, for inpainting, the visibility of its pixels
    (``holes``: bool [N, H, W], True = hidden; ``video`` must already have them filled).
    ``decoded``: the keyframes already decoded from ``key_bytes`` (uint8 [H, W, 3] each), so
    that they are not decoded again; without it they are decoded on first use.
    """
    prepared = _prepared(video.name, video.height, video.width, video.num_frames, video.fps,
                         config, key_bytes, codec, video.frames)
    if decoded is not None:
        prepared._keyframes = _to_patches(np.stack(decoded), prepared.grid)
    prepared.visible = _visibility(holes, prepared.grid, video.num_frames)
    return prepared


def _visibility(holes: np.ndarray | None, grid: PatchGrid, frames: int) -> torch.Tensor | None:
    """bool [P, N, 1, ph, pw]: False at hidden pixels (``holes``) and on the padding that
    fills out the last row and column of patches, so that neither the loss nor the training
    PSNR counts pixels that are never shown (the padding repeats edge pixels: easy to fit,
    it would pull capacity away from the frame and flatter the training PSNR); None when
    every pixel counts."""
    covered = grid.covered
    if holes is None and covered == (grid.height, grid.width):
        return None
    seen = torch.zeros(frames, *covered, 1, dtype=torch.bool)
    seen[:, :grid.height, :grid.width] = True if holes is None else torch.from_numpy(~holes)[..., None]
    return _to_patches(seen.numpy(), patch_grid(*covered, (grid.patch_h, grid.patch_w)))


def restore_video(name: str, height: int, width: int, length: int, fps: float,
                  config: ModelConfig, codec: str, key_bytes: list[bytes]) -> PreparedVideo:
    """Rebuild a video's decoding inputs from stored keyframe bytes (no target frames)."""
    return _prepared(name, height, width, length, fps, config, key_bytes, codec, None)


@dataclass(frozen=True)
class ClipRef:
    """Clip ``clip`` of patch sequence ``patch`` of video ``video``."""

    video: int
    patch: int
    clip: int


@dataclass
class Batch:
    """Network inputs for some clips; keyframes are deduplicated across the batch."""

    inputs: ClipBatch
    keyframes: torch.Tensor       # float [U, 3, ph, pw] in [0, 1], each distinct keyframe once
    start: torch.Tensor           # long [B]: row of each clip's start keyframe in ``keyframes``
    end: torch.Tensor             # long [B]
    target: torch.Tensor | None   # float [B, 3, T, ph, pw] in [0, 1]
    visible: torch.Tensor | None = None  # float [B, 1, T, ph, pw], 1 = visible; None: all
    # long [2, M]: (clip, slot) of each unmasked frame, ``inputs.mask.nonzero()`` made where
    # the mask is known (the host), so that selecting the frames needs no device sync.
    kept: torch.Tensor | None = None


def _unit(frames: torch.Tensor) -> torch.Tensor:
    """Integer RGB as float in [0, 1]: uint8 / 255, uint16 (a YUV source's) / 65535."""
    return frames.float().div_(255 if frames.dtype == torch.uint8 else RGB16_PEAK)


def all_clips(videos: list[PreparedVideo]) -> list[ClipRef]:
    return [ClipRef(v, p, c.index) for v, vid in enumerate(videos)
            for p in range(vid.patches) for c in vid.clips]


def make_batch(videos: list[PreparedVideo], refs: list[ClipRef], config: ModelConfig,
               with_target: bool = True) -> Batch:
    """Gather the inputs (and targets, with their visibility if any video has one) of ``refs``."""
    rows: dict[tuple[int, int, int], int] = {}
    key_list, start, end, clips, targets, visible = [], [], [], [], [], []
    masked = with_target and any(videos[r.video].visible is not None for r in refs)

    def row(v: int, p: int, frame: int) -> int:
        key = (v, p, frame)
        if key not in rows:
            rows[key] = len(key_list)
            key_list.append(videos[v].keyframes[p, videos[v].key_slot(frame)])
        return rows[key]

    for r in refs:
        clip = videos[r.video].clips[r.clip]
        clips.append(clip)
        start.append(row(r.video, r.patch, clip.start_key))
        end.append(row(r.video, r.patch, clip.end_key))
        if with_target:
            frames = videos[r.video].frames[r.patch, list(clip.frames)]   # [T, 3, ph, pw]
            targets.append(frames.permute(1, 0, 2, 3))
        if masked:
            seen = videos[r.video].visible
            visible.append(torch.ones_like(targets[-1][:1], dtype=torch.bool) if seen is None
                           else seen[r.patch, list(clip.frames)].permute(1, 0, 2, 3))
    target = _unit(torch.stack(targets)) if with_target else None
    inputs = clip_inputs(clips, config.embed_levels, config.embed_base)
    return Batch(inputs, torch.stack(key_list).float().div_(255),
                 torch.tensor(start), torch.tensor(end), target,
                 torch.stack(visible).float() if masked else None,
                 inputs.mask.nonzero().T.contiguous() if with_target else None)
