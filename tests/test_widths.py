"""The widths a rate target scales are configuration fields; the paper's sizes are unchanged."""
import pytest

from dnerv_fast import DNeRV, infer_config
from dnerv_fast.configs import ModelConfig, get_config


def test_stem_dim_sets_the_stem_hidden_width():
    config = get_config("tiny", stem_dim=24, lower_width=8, encoder_dim=12, fc_dim=6)
    sd = DNeRV(config).state_dict()
    assert sd["stem.mlp.0.weight"].shape[0] == 24
    assert sd["stem.mlp.2.weight"].shape[1] == 24
    assert sd["encoder.head.0.weight"].shape[0] == 12
    assert config.stage_widths()[0] == 6 + 12
    assert min(config.stage_widths()) == 8


def test_paper_default_stem_dim_is_512():
    assert get_config("uvg-M").stem_dim == 512


@pytest.mark.parametrize("bad", [0, -1, 4097, 2.5, True])
def test_stem_dim_bounds(bad):
    with pytest.raises(ValueError, match="stem_dim"):
        ModelConfig(fc_dim=16, stem_dim=bad, patch_size=(64, 64))


def test_infer_config_reads_the_widths():
    config = get_config("tiny", stem_dim=20, encoder_dim=10, fc_dim=7)
    state = DNeRV(config).state_dict()
    got = infer_config(state, base=get_config("tiny"))
    assert (got.fc_dim, got.stem_dim, got.encoder_dim) == (7, 20, 10)
    model = DNeRV(got)
    model.load_state_dict(state)
    assert sum(t.numel() for t in model.state_dict().values()) == \
        sum(t.numel() for t in state.values())
