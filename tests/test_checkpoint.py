import pytest
import torch

from dnerv_fast import CheckpointError, DNeRV, infer_config, load_state_dict


def test_reference_checkpoint_with_module_prefix_loads(tmp_path):
    src = DNeRV.from_config("tiny")
    path = tmp_path / "ref.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, path)
    dst = DNeRV.from_config("tiny")
    report = load_state_dict(dst, path)
    assert report.ok
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)


def test_mismatch_is_reported_clearly_and_model_untouched():
    src = DNeRV.from_config("tiny").state_dict()
    src.pop("rgb_head_layer.conv.2.bias")
    src["extra.weight"] = torch.zeros(1)
    src["decoder_list.0.tfc.weight"] = torch.zeros(3, 3, 1, 1)
    dst = DNeRV.from_config("tiny")
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_state_dict(dst, {"state_dict": src})
    msg = str(err.value)
    assert "missing: rgb_head_layer.conv.2.bias" in msg and "unexpected: extra.weight" in msg
    assert "decoder_list.0.tfc.weight: (3, 3, 1, 1) vs (256, 8, 1, 1)" in msg
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())
    report = load_state_dict(dst, {"state_dict": src}, strict=False)
    assert report.missing == ["rgb_head_layer.conv.2.bias"]


def test_infer_config_reads_fc_dim_and_clip_len():
    state = DNeRV.from_config("uvg-XS").state_dict()
    config = infer_config(state)
    assert (config.fc_dim, config.clip_len) == (107, 8)
    assert DNeRV(config).state_dict().keys() == state.keys()


def test_unreadable_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_state_dict(DNeRV.from_config("tiny"), bad)
