"""Weight quantisation: b bits per value, bounded error, exact zeros, exact serialisation."""
import numpy as np
import pytest
import torch

from dnerv_fast.errors import BitstreamError, QuantizationError
from dnerv_fast.codec.quantize import (dequantize_tensor, num_groups, prune_state_dict,
                                       quantize_tensor)
from dnerv_fast.codec.weights import (dequantize_state_dict, pack_weights, quantize_state_dict,
                                      unpack_weights)
from dnerv_fast.model.dnerv import DNeRV


@pytest.mark.parametrize("bits", [4, 5, 6, 7, 8])
def test_levels_and_error_bound(bits):
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(bits)) * 0.1
    w[3] = w[3].abs() + 0.05                    # a channel of one sign: 0 must still be exact
    q = quantize_tensor(w, bits)
    assert q.groups == 16
    codes = q.offsets.reshape(16, -1) + q.zero_point[:, None].astype(np.int64)
    assert codes.min() >= 0 and codes.max() <= 2 ** bits - 1      # fits in b bits
    assert (codes.max(1) - codes.min(1)).max() == 2 ** bits - 1   # the full range is used
    err = (dequantize_tensor(q) - w).abs().reshape(16, -1).max(1).values
    assert (err <= torch.from_numpy(q.scale) * 0.5 * (1 + 1e-5)).all()


def test_reference_fault_fixed_8_bits_never_need_257_levels():
    for w in (torch.linspace(-1, 1, 1000), torch.linspace(-0.3, 1, 1000), torch.linspace(0, 1, 1000)):
        q = quantize_tensor(w.reshape(1, -1), 8)
        codes = q.offsets.astype(np.int64) + int(q.zero_point[0])
        assert 0 <= codes.min() and codes.max() <= 255
        # 0 on the grid costs at most one level when the range straddles it asymmetrically
        assert len(np.unique(codes)) >= 255


def test_zeros_stay_exactly_zero_after_pruning():
    g = torch.Generator().manual_seed(0)
    sd = {"a.weight": torch.randn(32, 64, generator=g), "a.bias": torch.randn(32, generator=g)}
    pruned = prune_state_dict(sd, 0.5)
    zeros = pruned["a.weight"] == 0
    assert zeros.float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert torch.equal(pruned["a.bias"], sd["a.bias"])           # biases are not pruned
    deq = dequantize_tensor(quantize_tensor(pruned["a.weight"], 6))
    assert (deq[zeros] == 0).all()


def test_small_rows_share_one_group():
    assert num_groups((256, 8, 1, 1)) == 1       # temporal MLP rows of 8 taps
    assert num_groups((64,)) == 1
    assert num_groups((64, 64, 1, 2, 2)) == 64


def test_constant_and_zero_tensors():
    for w in (torch.zeros(4, 40), torch.full((4, 40), 0.25), torch.tensor([-3.0])):
        deq = dequantize_tensor(quantize_tensor(w, 8))
        assert torch.allclose(deq, w, atol=1e-6)


def test_bad_settings():
    with pytest.raises(QuantizationError, match="4..8"):
        quantize_tensor(torch.ones(3), 9)
    with pytest.raises(QuantizationError, match="prune"):
        prune_state_dict({"w": torch.ones(2, 2)}, 1.0)


def test_model_weights_round_trip_exactly():
    model = DNeRV.from_config("tiny")
    sd = model.state_dict()
    qsd = quantize_state_dict(sd, 6, prune=0.2)
    data = pack_weights(qsd)
    shapes = {k: tuple(t.shape) for k, t in sd.items()}
    back = dequantize_state_dict(unpack_weights(data, shapes, 6))
    for k, t in dequantize_state_dict(qsd).items():
        assert torch.equal(back[k], t), k
    params = sum(t.numel() for t in sd.values())
    assert len(data) < params * 6 / 8          # entropy coding beats fixed-length 6-bit codes
    with pytest.raises(BitstreamError):
        unpack_weights(data[:-7], shapes, 6)
    with pytest.raises(BitstreamError):
        unpack_weights(data + b"\0", shapes, 6)
