import math

import numpy as np
import pytest
import torch

from dnerv_fast import clip_inputs, clip_schedule, keyframe_indices, positional_encoding


def test_positional_encoding_is_the_float32_computation():
    t = torch.tensor([[0.0, 1 / 7, 0.5, 1.0], [0.25, 0.3, 0.999, 0.123]], dtype=torch.float32)
    pe = positional_encoding(t)
    assert pe.shape == (2, 480, 4) and pe.dtype == torch.float32
    # the rounding steps, redone in numpy: float32(t * float32(1.25**i)), then * float32(pi);
    # sin/cos are torch's CPU float32 ones, as in the reference (numpy's differ by 1 ulp)
    x = t.numpy()
    for i in (0, 1, 17, 100, 239):
        angle = torch.from_numpy((x * np.float32(1.25 ** i)).astype(np.float32) * np.float32(math.pi))
        assert angle.dtype == torch.float32
        assert torch.equal(pe[:, 2 * i], torch.sin(angle))
        assert torch.equal(pe[:, 2 * i + 1], torch.cos(angle))


def test_positional_encoding_interleaves_and_low_level_is_exact():
    t = torch.tensor([[0.5]])
    pe = positional_encoding(t)
    assert pe[0, 0, 0].item() == pytest.approx(1.0)   # sin(pi/2)
    assert pe[0, 1, 0].item() == pytest.approx(0.0, abs=1e-7)  # cos(pi/2)


def test_positional_encoding_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        positional_encoding(torch.zeros(8))


def test_schedule_matches_spec_for_a_20_frame_video():
    clips = clip_schedule(20, 8)
    assert [c.frames for c in clips] == [tuple(range(0, 8)), tuple(range(8, 16)), (16, 17, 18, 19, 19, 19, 19, 19)]
    assert [(c.start_key, c.end_key) for c in clips] == [(0, 8), (8, 16), (16, 19)]
    assert clips[2].mask == (True,) * 4 + (False,) * 4
    assert clips[0].backward_distance == tuple(f / 8 for f in range(8))
    assert clips[2].backward_distance[:4] == (0, 1 / 3, 2 / 3, 1)
    assert clips[1].t_idx[0] == 8 / 19
    assert keyframe_indices(20, 8) == [0, 8, 16, 19]


def test_schedule_exact_multiple_and_single_frame():
    clips = clip_schedule(16, 8)
    assert [(c.start_key, c.end_key) for c in clips] == [(0, 8), (8, 15)]
    one = clip_schedule(1, 8)
    assert one[0].frames == (0,) * 8 and one[0].mask == (True,) + (False,) * 7
    assert one[0].backward_distance == (0.0,) * 8 and one[0].t_idx == (0.0,) * 8
    with pytest.raises(ValueError):
        clip_schedule(0)


def test_clip_inputs_shapes_and_dtypes():
    batch = clip_inputs(clip_schedule(21, 8))
    assert batch.embed_input.shape == (3, 480, 8)
    assert batch.backward_distance.dtype == torch.float32 and batch.mask.dtype == torch.bool
    assert batch.mask.sum() == 21
