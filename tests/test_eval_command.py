"""``dnerv-fast eval --json``: CompressAI results files from a real .dnerv file."""
from __future__ import annotations

import json

import pytest

from dnerv_fast.cli import main
from dnerv_fast.codec.pipeline import encode
from dnerv_fast.codec.report import PADDED_NOTE
from dnerv_fast.media.synthetic import moving_pattern
from dnerv_fast.media.video_io import write_video


@pytest.fixture(scope="module")
def encoded_clip(tmp_path_factory):
    """A 9-frame 64x64 clip and its one-epoch .dnerv file: (file, source video)."""
    folder = tmp_path_factory.mktemp("clip")
    src = write_video(moving_pattern(9, 64, 64, name="clip").frames, folder / "clip.mp4")
    path = folder / "clip.dnerv"
    encode([src], path, epochs=1, batch_size=3, progress=False)
    return path, src


def test_eval_command_writes_json_and_names_the_variant(encoded_clip, tmp_path, capsys):
    path, src = encoded_clip
    out = tmp_path / "rd"
    assert main(["eval", str(path), str(src), "--anchors", "x264", "--crf", "40",
                 "--json", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert PADDED_NOTE in printed and f"wrote {out / 'x264.json'}" in printed
    dnerv = json.loads((out / "dnerv.json").read_text())
    assert dnerv["ms-ssim-variant"] == "reflect-pad-161"
    assert dnerv["results"]["bpp"] == [pytest.approx(8 * path.stat().st_size / (64 * 64 * 9))]
    assert 0 < dnerv["results"]["ms-ssim-rgb"][0] < 1
    assert sorted(p.name for p in out.iterdir()) == ["dnerv.json", "x264.json"]
    # an existing output is refused before any work, with nothing written
    stamp = (out / "x264.json").stat().st_mtime_ns
    assert main(["eval", str(path), str(src), "--anchors", "x264", "--crf", "40",
                 "--json", str(out), "-q"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "x264.json").stat().st_mtime_ns == stamp


def test_yuv420p_anchors_are_their_own_curve(encoded_clip, tmp_path):
    path, src = encoded_clip
    out = tmp_path / "rd"
    assert main(["eval", str(path), str(src), "--anchors", "x265", "--crf", "40",
                 "--pix-fmt", "yuv444p", "yuv420p", "--json", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dnerv.json", "x265.json", "x265420.json"]
    described = json.loads((out / "x265420.json").read_text())["description"]
    assert "yuv420p" in described


def test_the_cli_spells_the_anchor_pixel_formats_of_the_codec():
    from dnerv_fast.codec.anchors import PIX_FMTS
    from dnerv_fast.codec.commands import ANCHOR_PIX_FMTS

    assert tuple(ANCHOR_PIX_FMTS) == PIX_FMTS


def test_the_cli_spells_the_keyframe_codecs_default_first():
    from dnerv_fast.codec.commands import KEYFRAME_CODECS
    from dnerv_fast.media.keyframes import CODECS, DEFAULT_CODEC

    assert sorted(KEYFRAME_CODECS) == sorted(CODECS) and KEYFRAME_CODECS[0] == DEFAULT_CODEC
