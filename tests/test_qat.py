"""Quantisation-aware training: the forward pass sees exactly the file's weights."""
import pytest
import torch

from dnerv_fast.codec.qat import attach, detach, fake_quantize, qat_epochs
from dnerv_fast.codec.quantize import (dequantize_tensor, prune_state_dict, prune_threshold,
                                       quantize_tensor)
from dnerv_fast.configs import get_config
from dnerv_fast.errors import UsageError
from dnerv_fast.model.dnerv import DNeRV

SMALL = get_config("tiny", fc_dim=4, stem_dim=16, lower_width=4, encoder_dim=4)


@pytest.mark.parametrize("bits", [4, 5, 6, 8])
def test_fake_quantize_matches_the_file_quantiser(bits):
    torch.manual_seed(bits)
    for t in DNeRV(SMALL).state_dict().values():
        assert torch.equal(fake_quantize(t, bits), dequantize_tensor(quantize_tensor(t, bits)))


def test_gradient_passes_straight_through():
    w = torch.randn(8, 40, requires_grad=True)
    (fake_quantize(w, 5) * 3).sum().backward()
    assert torch.equal(w.grad, torch.full_like(w, 3.0))


def test_attach_then_detach_keeps_names_and_float_weights():
    model = DNeRV(SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    targets = attach(model, 6)
    w = model.stem.mlp[0].weight
    assert torch.equal(w, dequantize_tensor(quantize_tensor(before["stem.mlp.0.weight"], 6)))
    detach(targets)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_qat_epochs_share():
    assert qat_epochs(100, 0.2) == 20
    assert qat_epochs(3, 0.2) == 1 and qat_epochs(1, 0.5) == 0 and qat_epochs(10, 0) == 0
    with pytest.raises(UsageError, match="QAT share"):
        qat_epochs(10, 1.0)


def test_pruning_is_fine_tuned_through_and_kept_by_the_file():
    torch.manual_seed(1)
    model = DNeRV(SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threshold = prune_threshold(before, 0.3)
    targets = attach(model, 6, prune=0.3)
    w = model.stem.mlp[0].weight
    cut = before["stem.mlp.0.weight"].abs() <= threshold
    assert cut.any() and torch.equal(w[cut], torch.zeros_like(w[cut]))
    w.sum().backward()
    raw = model.stem.mlp[0].parametrizations.weight.original
    assert torch.equal(raw.grad[cut], torch.zeros_like(raw.grad[cut]))   # cut weights stay cut
    detach(targets)
    after = model.state_dict()
    for k, t in before.items():
        if t.dim() >= 2:
            assert torch.equal(after[k][t.abs() <= threshold], torch.zeros_like(t[t.abs() <= threshold]))
            assert torch.equal(after[k][t.abs() > threshold], t[t.abs() > threshold])
        else:
            assert torch.equal(after[k], t)                                 # biases are kept
    # the file's own pruning, at the same fraction, cuts nothing more
    assert torch.equal(prune_state_dict(after, 0.3)["stem.mlp.0.weight"], after["stem.mlp.0.weight"])
