"""The kernels' build cache: one folder per content and toolchain (not per install), a message
only on a compile."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch.utils.cpp_extension

from dnerv_fast.ops import _jit

TOOLS = {"torch": "2.13.0+cpu", "cuda": "None", "python": "cpython-311", "cxx": "",
         "cuda_arch": "", "cpu": "flags: avx2"}
FLAGS = [["-O3"], [], ["-fopenmp"]]


def _copy_sources(folder: Path) -> Path:
    shutil.copytree(_jit.source_dir(), folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_build_key_separates_sources_flags_and_toolchains_not_installs(tmp_path):
    a, b = _copy_sources(tmp_path / "a"), _copy_sources(tmp_path / "b")

    def key(name="ext", src=a, sources=("cpu_warp.cpp",), flags=FLAGS, **tools):
        return _jit.build_key(name, src, sources, flags, {**TOOLS, **tools})

    first = key()
    assert first == key() == key(src=b)                            # stable; a second checkout
    others = {key(flags=[["-O2"], [], ["-fopenmp"]]),
              key(flags=[["-O3", "-fopenmp"], [], []]),            # same flags, other place
              key(torch="2.14.0+cpu"), key(cuda="12.8"), key(python="cpython-312"),
              key(name="other"), key(sources=("cpu_warp.cpp", "cuda_binding.cpp"))}
    (a / "cuda_warp.cu").write_text((a / "cuda_warp.cu").read_text() + "\n// edited\n")
    assert key() == first                                          # not a source of this one
    (a / "dnerv_math.h").write_text((a / "dnerv_math.h").read_text() + "\n// edited\n")
    others.add(key())                                              # any header's contents
    (a / "cpu_warp.cpp").write_text((a / "cpu_warp.cpp").read_text() + "\n// edited\n")
    others.add(key())                                              # a source's contents
    assert first not in others and len(others) == 9


def test_build_root_honours_our_variable_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(_jit.BUILD_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _jit.build_root() == tmp_path / "xdg" / "dnerv_fast"
    monkeypatch.setenv(_jit.BUILD_DIR_ENV, str(tmp_path / "mine"))
    assert _jit.build_root() == tmp_path / "mine"


def test_compiling_message_only_when_a_build_happens(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(_jit.BUILD_DIR_ENV, str(tmp_path))
    directories = []

    def fake_load(*, name, build_directory, **_):
        directories.append(Path(build_directory))
        (Path(build_directory) / f"{name}{torch.utils.cpp_extension.LIB_EXT}").touch()
        return name

    monkeypatch.setattr(torch.utils.cpp_extension, "load", fake_load)

    def build(flags: list[str]) -> object:
        return _jit._build("fake_ext", ["cpu_warp.cpp"], extra_cflags=flags, what="cpu")

    assert build(["-O3"]) == "fake_ext"
    err = capsys.readouterr().err
    assert "compiling the cpu kernels into" in err and "compiled the cpu kernels in" in err
    build(["-O3"])
    assert capsys.readouterr().err == ""                 # built already: silent
    build(["-O2"])
    assert "compiling" in capsys.readouterr().err        # other flags: another folder
    assert directories[0] == directories[1] != directories[2]
    assert directories[0].parent == tmp_path and directories[0].name.startswith("fake_ext-")


def test_a_second_interpreter_loads_the_built_kernels_silently():
    _jit.cpu_extension()  # builds at most once for the whole suite (the other CPU tests share it)
    done = subprocess.run([sys.executable, "-c",
                           "from dnerv_fast.ops._jit import cpu_extension; cpu_extension()"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "compil" not in done.stderr, done.stderr


def test_missing_source_is_named():
    with pytest.raises(FileNotFoundError, match="nope.cpp"):
        _jit._build("x", ["nope.cpp"], extra_cflags=[], what="cpu")


def test_a_second_checkout_reuses_the_build(monkeypatch, tmp_path, capsys):
    """Same sources elsewhere (a reinstall in editable mode, another clone): same folder, the
    sources compiled from the folder's own copy, so neither the key nor ninja sees a change."""
    monkeypatch.setenv(_jit.BUILD_DIR_ENV, str(tmp_path / "cache"))
    calls = []

    def fake_load(*, name, build_directory, sources, **_):
        calls.append((Path(build_directory), sources))
        (Path(build_directory) / f"{name}{torch.utils.cpp_extension.LIB_EXT}").touch()
        return name

    monkeypatch.setattr(torch.utils.cpp_extension, "load", fake_load)
    for checkout in ("one", "two"):
        copy = _copy_sources(tmp_path / checkout)
        monkeypatch.setattr(_jit, "source_dir", lambda copy=copy: copy)
        _jit._build("fake_ext", ["cpu_warp.cpp"], extra_cflags=["-O3"], what="cpu")
    assert calls[0] == calls[1] and str(calls[0][0]) in calls[0][1][0]
    assert capsys.readouterr().err.count("compiling") == 1
