"""Training recipes, the useless-output guard, and messages that speak the caller's language."""
import ast
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

import dnerv_fast
from dnerv_fast.cli import main
from dnerv_fast.codec.guard import FLOOR_DB, OutputQualityWarning, check_output
from dnerv_fast.codec.pipeline import encode
from dnerv_fast.errors import OutputExistsError, UsageError
from dnerv_fast.media.synthetic import moving_pattern
from dnerv_fast.media.video_io import write_video
from dnerv_fast.option_names import as_flags
from dnerv_fast.train.recipe import (MAX_DEFAULT_LR, PAPER_LR, PAPER_STEPS, choose,
                                     default_lr)


def test_paper_recipe_is_the_published_one():
    r = choose("paper", epochs=1600, clips=11712, parameters=3_000_000)
    assert (r.lr, r.warmup, r.batch_size) == (5e-4, 0.2, 32)
    assert r.steps == 1600 * math.ceil(11712 / 32) == PAPER_STEPS
    line = r.describe()
    assert "\n" not in line and "5e-04" not in line
    for part in ("recipe paper", "peak lr 0.0005", "warm-up 20%", "cosine", "batch 32",
                 "AdamW (0.9, 0.999)"):
        assert part in line


def test_default_rate_falls_with_steps_to_the_papers():
    rates = [default_lr(steps, 50_000) for steps in (5, 50, 500, 5_000, 50_000, PAPER_STEPS)]
    assert rates == sorted(rates, reverse=True)
    assert rates[0] <= MAX_DEFAULT_LR and rates[0] > 5 * PAPER_LR
    assert default_lr(PAPER_STEPS, 3_000_000) == PAPER_LR
    assert default_lr(10 * PAPER_STEPS, 3_000_000) == PAPER_LR      # never below the paper's


def test_default_recipe_counts_steps_and_takes_overrides():
    r = choose("default", epochs=10, clips=20, parameters=10_000)
    assert r.batch_size == 8 and r.steps == 30 and r.lr == default_lr(30, 10_000)
    assert r.warmup == 0.2 and "30 steps" in r.describe()
    by_hand = choose("default", epochs=10, clips=20, parameters=10_000, lr=1e-3, batch_size=4,
                     warmup=0.05)
    assert (by_hand.lr, by_hand.batch_size, by_hand.warmup, by_hand.steps) == (1e-3, 4, 0.05, 50)
    assert "set by hand" in by_hand.describe()
    assert choose("paper", epochs=10, clips=20, parameters=1, lr=2e-3).batch_size == 32
    with pytest.raises(UsageError, match="unknown recipe 'fast'"):
        choose("fast", epochs=1, clips=1, parameters=1)


def test_guard_judges_the_file():
    ref = [moving_pattern(8, 64, 64).frames]
    flat = [np.full_like(ref[0], 128)]
    bad = check_output(flat, ref, [25.0], 1000, epochs=3)
    assert len(bad.warnings) == 1 and bad.x264_psnr is not None and bad.psnr < bad.x264_psnr
    assert "x264 at its coarsest" in bad.warnings[0] and "epochs=" in bad.warnings[0]
    assert "lr=" in bad.warnings[0] and "target_bpp=" in bad.warnings[0]
    good = check_output(ref, ref, [25.0], 1000, epochs=3)
    assert good.warnings == ()
    big = check_output(ref, ref, [25.0], ref[0].size + 1, epochs=3)
    assert len(big.warnings) == 1 and "raw RGB" in big.warnings[0]
    assert FLOOR_DB == 20.0


def test_as_flags_spells_api_options_as_flags():
    assert as_flags("pass overwrite=True to replace it") == "pass --overwrite to replace it"
    assert as_flags("device='cuda' needs a GPU") == "--device cuda needs a GPU"
    assert as_flags("(checkpoint_every=N saves)") == "(--checkpoint-every N saves)"
    assert as_flags("more epochs=, or lr=; target_bpp= too") == \
        "more --epochs, or --lr; --target-bpp too"
    assert as_flags("weight_bits=4 x.lr=2") == "weight_bits=4 x.lr=2"      # not options


# Modules that only the command line runs: their messages may name flags.
_CLI_MODULES = {"cli.py", "codec/commands.py", "demo.py", "profiling/commands.py"}


def _messages(tree: ast.AST):
    """String pieces of every raise and warnings.warn call of a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            yield node.lineno, node.exc
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "warn":
            yield node.lineno, node


def test_library_messages_name_python_options_not_flags():
    root = Path(dnerv_fast.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel in _CLI_MODULES:
            continue
        for line, node in _messages(ast.parse(path.read_text())):
            for piece in ast.walk(node):
                if isinstance(piece, ast.Constant) and isinstance(piece.value, str) and \
                        any(f" --{c}" in " " + piece.value or f"(--{c}" in piece.value
                            for c in "abcdefghijklmnopqrstuvwxyz"):
                    found.append(f"{rel}:{line}: {piece.value!r}")
    assert not found, "library messages naming CLI flags:\n" + "\n".join(found)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(moving_pattern(9, 64, 64).frames,
                       tmp_path_factory.mktemp("clip") / "pattern.mp4")


def test_encode_prints_recipe_and_warns_on_useless_output(clip, tmp_path, capsys):
    with pytest.warns(OutputQualityWarning, match="epochs=") as caught:
        result = encode([clip], tmp_path / "a.dnerv", size="tiny", epochs=1, recipe="paper",
                        keyframe_codec="webp", progress=True)
    assert all("--" not in str(w.message) for w in caught)
    assert result.recipe.lr == 5e-4 and result.recipe.batch_size == 32
    assert result.verdict is not None and result.verdict.warnings
    assert "recipe='paper' is tuned for" in result.verdict.warnings[0]
    out = capsys.readouterr().out
    assert sum(line.startswith("recipe paper: peak lr 0.0005") for line in out.splitlines()) == 1
    with pytest.raises(OutputExistsError) as err:
        encode([clip], tmp_path / "a.dnerv", epochs=1, progress=False)
    assert "overwrite=True" in str(err.value) and "--overwrite" not in str(err.value)
    (tmp_path / "b.dnerv.ckpt").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="resume=True .* overwrite=True"):
        encode([clip], tmp_path / "b.dnerv", epochs=1, progress=False)


def test_cli_speaks_flags(clip, tmp_path, capsys):
    out = tmp_path / "c.dnerv"
    assert main(["encode", str(clip), "-o", str(out), "--epochs", "1", "--keyframe-codec", "webp",
                 "--lr", "1e-4", "-q"]) == 0
    err = capsys.readouterr().err
    assert "dnerv-fast encode: warning: the file decodes at" in err
    assert "--epochs" in err and "--lr" in err and "lr=" not in err
    assert main(["encode", str(clip), "-o", str(out), "--epochs", "1", "-q"]) == 1
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err


def test_encode_default_recipe_line(clip, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutputQualityWarning)
        result = encode([clip], tmp_path / "d.dnerv", size="tiny", epochs=2,
                        keyframe_codec="webp", progress=True)
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("recipe default")]
    assert len(line) == 1 and f"peak lr {result.recipe.lr:.3g}" in line[0]
    assert result.recipe.lr > 5e-4 and result.recipe.batch_size == 8
