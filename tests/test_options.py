"""One definition of every option: the parser, the API and the code apply the same defaults
and bounds (dnerv_fast/options.py)."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re

import pytest

from dnerv_fast import options
from dnerv_fast.cli import build_parser, main
from dnerv_fast.errors import DNeRVError, UsageError
from dnerv_fast.options import DecodeSettings, EncodeSettings, EvalSettings


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    return build_parser()._subparsers._group_actions[0].choices


def _shown_defaults(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> the default as `--help` prints it, for every option that shows one."""
    formatter = parser._get_formatter()
    shown = {}
    for action in parser._actions:
        if not action.help or "%(default)" not in (formatter._get_help_string(action) or ""):
            continue
        match = re.search(r"\(default: ([^)]*)\)$", formatter._expand_help(action))
        if match:
            shown[action.dest] = match.group(1)
    return shown


def _applied_defaults() -> dict[str, dict[str, object]]:
    """command -> dest -> the default the code applies when the option is not given."""
    from dnerv_fast.codec.evaluate import evaluate
    from dnerv_fast.codec.pipeline import decode, encode

    def signature(function) -> dict[str, object]:
        return {k: p.default for k, p in inspect.signature(function).parameters.items()
                if p.default is not inspect.Parameter.empty}

    enc = {o.name: getattr(EncodeSettings(), o.name) for o in options.options(EncodeSettings)}
    enc["device"] = signature(encode)["device"]
    dec = signature(decode)
    ev = signature(evaluate)
    return {"encode": enc, "decode": dec, "eval": {"crfs": ev["crfs"], "anchors": ev["anchors"],
                                                   "preset": ev["preset"],
                                                   "pix_fmts": ev["pix_fmts"]}}


@pytest.mark.parametrize("command", ["encode", "decode", "eval"])
def test_every_default_shown_by_help_is_the_default_the_code_applies(command):
    parser = _subparsers()[command]
    applied = _applied_defaults()[command]
    shown = _shown_defaults(parser)
    assert shown, "no defaults found in --help"
    for dest, text in shown.items():
        if dest not in applied:
            continue
        value = applied[dest]
        expected = str(list(value)) if isinstance(value, tuple) else str(value)
        assert text == expected, f"{command} --help shows {dest} default {text}, the code uses {expected}"
    # Every option with a default the parser applies is one the code applies too.
    for action in parser._actions:
        if action.dest in applied and action.default is not None and action.nargs != 0:
            default = tuple(action.default) if isinstance(action.default, list) else action.default
            assert default == applied[action.dest], action.dest


def test_the_keyframe_quality_defaults_in_help_are_the_codecs():
    from dnerv_fast.media.keyframes import CODECS, DEFAULT_CODEC
    assert list(options.KEYFRAME_QUALITY) == list(options.KEYFRAME_CODECS)
    assert options.KEYFRAME_CODECS[0] == DEFAULT_CODEC == EncodeSettings().keyframe_codec
    assert sorted(options.KEYFRAME_QUALITY) == sorted(CODECS)
    for name, quality in options.KEYFRAME_QUALITY.items():
        if quality is not None:
            assert CODECS[name].default_quality == quality, name
    text = " ".join(_subparsers()["encode"].format_help().split())
    crf = re.search(r"hevc/av1: CRF \(lower is better; hevc 0-51, av1 1-63; default (\d+)/(\d+)\)"
                    r"|av1/hevc: CRF \(lower is better; hevc 0-51, av1 1-63; default (\d+)/(\d+)\)",
                    text)
    assert crf, text
    a, b = [g for g in crf.groups() if g is not None]
    first, second = ("hevc", "av1") if crf.group(1) else ("av1", "hevc")
    assert int(a) == CODECS[first].default_quality and int(b) == CODECS[second].default_quality
    pil = re.search(r"webp/jpeg: quality 1-100 \(higher is better; default (\d+)/(\d+)\)", text)
    assert pil and (int(pil.group(1)), int(pil.group(2))) == (CODECS["webp"].default_quality,
                                                              CODECS["jpeg"].default_quality)


def test_constants_repeated_for_a_fast_help_equal_their_modules():
    from dnerv_fast.codec.anchors import PIX_FMTS
    from dnerv_fast.codec.quantize import MAX_BITS, MIN_BITS
    from dnerv_fast.devices import DEVICES
    from dnerv_fast.train.loss import LOSSES
    from dnerv_fast.train.mixed import PRECISIONS
    assert options.ANCHOR_PIX_FMTS == tuple(PIX_FMTS)
    assert (options.MIN_BITS, options.MAX_BITS) == (MIN_BITS, MAX_BITS)
    assert options.DEVICES == tuple(DEVICES)
    assert tuple(options.LOSSES) == tuple(LOSSES)
    assert tuple(options.PRECISIONS) == tuple(PRECISIONS)


def test_train_settings_share_the_encode_defaults():
    from dnerv_fast.train.trainer import TrainSettings
    from dnerv_fast.train import recipe
    train = TrainSettings(epochs=1)
    for name in ("loss", "seed", "precision", "compile"):
        assert getattr(train, name) == getattr(EncodeSettings(), name), name
    # encode leaves these to the recipe (train.recipe); the trainer's own defaults are the
    # paper's rate and warm-up at the default recipe's batch
    assert (EncodeSettings().batch_size, EncodeSettings().lr, EncodeSettings().warmup) == \
        (None, None, None)
    assert (train.batch_size, train.lr, train.warmup) == \
        (recipe.DEFAULT_BATCH, recipe.PAPER_LR, recipe.PAPER_WARMUP)
    assert options.RECIPES == recipe.RECIPES and EncodeSettings().recipe == "default"


@pytest.mark.parametrize("argv", [["--bits", "12"], ["--epochs", "0"], ["--target-bpp", "-1"],
                                  ["--lr", "2"], ["--qat", "1"], ["--prune", "nan"],
                                  ["--batch-size", "x"], ["--max-frames", "0"]])
def test_values_the_parser_can_check_exit_2_with_the_usage_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["encode", "in.mp4", "-o", "out.dnerv", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dnerv-fast encode") and f"argument {argv[0]}:" in err


def test_api_errors_name_the_keyword_not_the_flag():
    with pytest.raises(UsageError, match=r"^bits must be an integer in 4\.\.8, got 12$"):
        EncodeSettings(bits=12)
    with pytest.raises(UsageError, match="target_bpp"):
        EncodeSettings(target_bpp=-1.0)
    with pytest.raises(UsageError, match="epochs"):
        EncodeSettings(epochs=True)
    assert isinstance(UsageError("x"), (DNeRVError, ValueError))
    with pytest.raises(TypeError, match="epoch"):
        options.build(EncodeSettings, None, {"epoch": 3})
    assert options.build(EncodeSettings, None, {"epochs": 3}).epochs == 3
    assert EvalSettings(crfs=[20, 30]).crfs == (20, 30)
    with pytest.raises(UsageError, match=r"crfs\[1\]"):
        EvalSettings(crfs=[20, 60])
    with pytest.raises(UsageError, match="fmt"):
        DecodeSettings(fmt="gif")


def test_the_encode_docstring_lists_every_setting():
    from dnerv_fast.codec.pipeline import encode
    for o in options.options(EncodeSettings):
        assert f"``{o.name}`` (default ``{o.default!r}``" in encode.__doc__
    assert "--" not in encode.__doc__.split("Settings:")[1], "the API speaks Python, not flags"


def test_every_setting_has_help_and_a_type():
    for settings in options.iter_settings():
        for o in options.options(settings):
            assert o.spec.help and o.spec.kind in (int, float, str, bool), o.name
            assert dataclasses.is_dataclass(settings)


def test_keyframe_settings_are_named_as_the_codec_names_them():
    assert options.keyframe_setting("av1", 25) == "av1 CRF 25 (lower is better)"
    assert options.keyframe_setting("webp", 85) == "webp quality 85 (higher is better)"
    assert options.keyframe_setting("png", 0) == "png (lossless)"
