import pytest
import torch

import dnerv_fast
from dnerv_fast import DNeRV, NeRV, clip_inputs, clip_schedule
from dnerv_fast.configs import CONFIGS, PUBLISHED_PARAMS_M, ModelConfig, get_config
from composed_dnerv import composed_forward


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_parameter_counts_match_the_paper(name):
    assert round(n_params(DNeRV.from_config(name)) / 1e6, 3) == PUBLISHED_PARAMS_M[name]


def test_from_config_names_are_case_insensitive_and_reject_unknown():
    assert DNeRV.from_config("UVG-m").config.fc_dim == 213
    with pytest.raises(ValueError, match="unknown configuration"):
        DNeRV.from_config("uvg-XXL")


def expected_keys(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Reference key names and shapes, written out from the paper's reference code."""
    gh, gw = config.stem_grid
    w = config.stage_widths()
    T, E, F_ = config.clip_len, config.embed_length, config.fc_dim
    keys = {"stem.mlp.0.weight": (512, E, 1), "stem.mlp.0.bias": (512,),
            "stem.mlp.2.weight": (F_ * gh * gw, 512, 1), "stem.mlp.2.bias": (F_ * gh * gw,),
            "encoder.head.0.weight": (64, 3, 1, 3, 3), "encoder.head.0.bias": (64,)}
    for i, s in enumerate(config.strides[::-1]):
        keys[f"encoder.body.{i}.0.weight"] = (64, 64, 1, s, s)
        keys[f"encoder.body.{i}.0.bias"] = (64,)
    for i, s in enumerate(config.strides):
        c_in, c_out = w[i], w[i + 1]
        keys[f"decoder_list.{i}.to_style.conv.weight"] = (2 * c_in, 64, 1, 1, 1)
        keys[f"decoder_list.{i}.to_style.conv.bias"] = (2 * c_in,)
        keys[f"decoder_list.{i}.conv.weight"] = (c_out * s * s, c_in, 1, 3, 3)
        keys[f"decoder_list.{i}.conv.bias"] = (c_out * s * s,)
        keys[f"decoder_list.{i}.tfc.weight"] = (c_out * T, T, 1, 1)
        keys[f"decoder_list.{i}.tfc.bias"] = (c_out * T,)
    for i, c in enumerate(w):
        keys[f"flow_pred_list.{i}.conv.0.weight"] = (c // 4, c, 1, 1, 1)
        keys[f"flow_pred_list.{i}.conv.0.bias"] = (c // 4,)
        keys[f"flow_pred_list.{i}.conv.2.weight"] = (4, c // 4, 1, 3, 3)
        keys[f"flow_pred_list.{i}.conv.2.bias"] = (4,)
    c = w[-1] + 3
    keys.update({"rgb_head_layer.conv.0.weight": (c // 4, c, 1, 1, 1), "rgb_head_layer.conv.0.bias": (c // 4,),
                 "rgb_head_layer.conv.2.weight": (3, c // 4, 1, 3, 3), "rgb_head_layer.conv.2.bias": (3,)})
    return keys


@pytest.mark.parametrize("name", ["uvg-M", "ucf101-S", "tiny"])
def test_state_dict_keys_and_shapes_are_the_reference_ones(name):
    model = DNeRV.from_config(name)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected_keys(model.config)
    assert not list(model.buffers(recurse=True)) or all(
        k not in model.state_dict() for k, _ in model.named_buffers())


def make_inputs(config: ModelConfig, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    clips = clip_schedule(21, config.clip_len)[:batch]
    inputs = clip_inputs(clips, config.embed_levels, config.embed_base)
    keyframe = torch.randn(batch, 3, 2, *config.patch_size, generator=g)
    return inputs.embed_input, keyframe, inputs.backward_distance


def randomize_biases(model, seed=0):
    """Zero-initialised biases would hide bias bugs; give every parameter a random value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("overrides", [{}, {"patch_size": (128, 64)}, {"clip_len": 5, "patch_size": (64, 128)}])
def test_forward_through_ops_matches_plain_torch_composition(overrides):
    model = DNeRV.from_config("tiny", **overrides)
    randomize_biases(model)
    embed, key, bd = make_inputs(model.config)
    with torch.no_grad(), dnerv_fast.ops.use_backend("reference"):
        out = model(embed, key, bd)
        expected = composed_forward(model, embed, key, bd)
    assert out.shape == (2, 3, model.config.clip_len, *model.config.patch_size)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    assert out.min() >= 0 and out.max() <= 1


def test_paper_shapes_forward_uvg_xs():
    model = DNeRV.from_config("uvg-XS")
    embed, key, bd = make_inputs(model.config, batch=1)
    with torch.no_grad():
        out = model(embed, key, bd)
    assert out.shape == (1, 3, 8, 256, 320)


def test_backward_reaches_every_parameter():
    model = DNeRV.from_config("tiny")
    randomize_biases(model)
    embed, key, bd = make_inputs(model.config)
    target = torch.rand(2, 3, 8, 64, 64)
    # the clamp stops gradients where it saturates; a realistic target keeps most pixels inside
    loss = (model(embed, key, bd) - target).abs().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_decode_with_shared_keyframes_matches_forward():
    """Encoding a video's distinct keyframes once and pairing them per clip gives the same frames."""
    model = DNeRV.from_config("tiny")
    randomize_biases(model)
    clips = clip_schedule(20, 8)
    inputs = clip_inputs(clips)
    keys = torch.randn(1, 3, 4, 64, 64)  # frames 0, 8, 16, 19 of the video
    slot = {0: 0, 8: 1, 16: 2, 19: 3}
    start = torch.tensor([slot[c.start_key] for c in clips])
    end = torch.tensor([slot[c.end_key] for c in clips])
    with torch.no_grad():
        shared = model.decode_clips(inputs.embed_input, keys[0].transpose(0, 1), start, end,
                                    inputs.backward_distance)
        per_clip = model(inputs.embed_input,
                         torch.stack([keys[0, :, [slot[c.start_key], slot[c.end_key]]] for c in clips]),
                         inputs.backward_distance)
    torch.testing.assert_close(shared, per_clip, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("bad, match", [
    (lambda e, k, b: (e[:, :-1], k, b), r"embed_input must be \[B, 480, 8\]"),
    (lambda e, k, b: (e, k[..., :-1], b), r"keyframes must be \[B, 3, K, 64, 64\]"),
    (lambda e, k, b: (e, k[:, :, :1], b), r"keyframe must be \[B, 3, 2, H, W\]"),
    (lambda e, k, b: (e, k, b[:, :3]), r"backward_distance must be \[2, 8\]"),
    (lambda e, k, b: (e, k.to(torch.int64), b), "keyframes must be normalised floats"),
])
def test_clear_errors_for_bad_inputs(bad, match):
    model = DNeRV.from_config("tiny")
    with pytest.raises((ValueError, TypeError), match=match):
        model(*bad(*make_inputs(model.config)))


def test_config_rejects_patch_not_multiple_of_total_stride():
    with pytest.raises(ValueError, match="multiple of the total stride 64"):
        get_config("tiny", patch_size=(96, 64))


def test_config_round_trips_through_dict():
    for config in CONFIGS.values():
        assert ModelConfig.from_dict(config.to_dict()) == config


def test_nerv_baseline_shapes_and_range():
    model = NeRV.from_config("tiny")
    embed, _, _ = make_inputs(model.config)
    out = model(embed)
    assert out.shape == (2, 3, 8, 64, 64) and 0 <= out.min() and out.max() <= 1


def test_pointwise_conv_of_parts_equals_conv_of_their_concatenation():
    from dnerv_fast.model.layers import FrameConv
    torch.manual_seed(0)
    conv = FrameConv(7, 5)
    a, b = torch.randn(2, 4, 3, 5, 6), torch.randn(2, 3, 3, 5, 6)
    expected = torch.nn.functional.conv3d(torch.cat([a, b], 1), conv.weight, conv.bias)
    torch.testing.assert_close(conv.pointwise(a, b), expected)
    torch.testing.assert_close(conv(torch.cat([a, b], 1)), expected)
    with pytest.raises(ValueError, match="expects 7 input channels, got 4"):
        conv.pointwise(a)
