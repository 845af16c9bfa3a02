import json

import pytest

from dnerv_fast.cli import main
from dnerv_fast.profiling.decode_speed import ProfileSettings, run_profile


def test_profile_tiny_on_cpu_reports_fps_memory_and_breakdown():
    r = run_profile(ProfileSettings(size="tiny", backend="reference", frame_size=(144, 176),
                                    warmup=1, repeats=2, batch=2))
    assert r["fps"] == r["clip"]["fps"] > 0 and r["clip"]["frames_per_call"] == 16
    assert r["full_frame"]["patches"] == 9 and r["full_frame"]["fps"] > 0
    stages = {row["stage"] for row in r["breakdown"]}
    assert {"flow_warp", "saf_modulate", "upsample_tail", "block_conv3x3", "conv_head",
            "keyframe_encoder", "total"} <= stages
    assert "peak_process_rss_mb" in r["memory"]
    assert "vs_fp32_reference" not in r  # the reference itself at fp32 needs no comparison


def test_profile_bf16_stays_close_to_the_fp32_reference():
    r = run_profile(ProfileSettings(size="tiny", backend="reference", dtype="bf16", frame_size=None,
                                    warmup=0, repeats=1, breakdown=False))
    assert r["vs_fp32_reference"]["psnr_db"] > 30


def test_profile_cli_writes_json_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "p.json"
    args = ["profile", "--size", "tiny", "--backend", "reference", "--frame-size", "none",
            "--warmup", "0", "--repeats", "1", "--no-breakdown", "--json", str(out)]
    assert main(args) == 0
    assert json.loads(out.read_text())["fps"] > 0
    assert "clips (patch frames)" in capsys.readouterr().out
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err


def test_profile_rejects_cuda_graphs_without_gpu(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert main(["profile", "--size", "tiny", "--cuda-graphs", "--frame-size", "none"]) == 1
    assert "needs a CUDA device" in capsys.readouterr().err


def test_profile_output_is_free_of_profiler_noise_and_shows_progress(capfd):
    args = ["profile", "--size", "tiny", "--backend", "reference", "--frame-size", "none",
            "--warmup", "0", "--repeats", "1"]
    assert main(args) == 0
    out, err = capfd.readouterr()
    assert "USDT" not in out + err and "profiler_start" not in out + err
    assert "[profile] timing clips" in err and "per-stage breakdown" in err


def test_noisy_figures_are_flagged():
    from dnerv_fast.profiling.commands import format_report
    from dnerv_fast.profiling.timing import summarize
    quiet, noisy = summarize([1.0, 1.01, 1.02, 1.0]), summarize([1.0, 2.0, 5.0, 1.0])
    assert not quiet["noisy"] and noisy["noisy"]
    report = {"settings": {"size": "tiny", "dtype": "fp32", "compile": False, "cuda_graphs": False,
                           "batch": 1}, "device": "cpu", "backend": "cpu",
              "clip": {**noisy, "fps": 8.0}, "memory": {}, "malloc": "default"}
    text = format_report(report)
    assert "NOISY (" in text.splitlines()[2] and "do not quote it" in text
    assert "NOISY" not in format_report({**report, "clip": {**quiet, "fps": 8.0}})


def test_progress_reports_what_is_left(monkeypatch):
    import torch

    from dnerv_fast.profiling import timing
    monkeypatch.setattr(timing, "PROGRESS_EVERY_S", 0.0)
    heard = []
    timing.time_repeats(lambda: None, torch.device("cpu"), 1, 3, heard.append)
    assert len(heard) == 3 and heard[0].startswith("  1/4 calls (1 warm-up), about ")


def test_profile_names_the_backends_of_the_registry(capsys):
    assert main(["profile", "--size", "tiny", "--backend", "nope", "--frame-size", "none"]) == 1
    err = capsys.readouterr().err
    assert "unknown backend 'nope'" in err and "reference" in err and "triton" in err
