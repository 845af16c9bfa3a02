"""Builds of the CUDA harness: the torch CPU extension (cuda_binding.cpp + the .cu files, so the
real Python wrappers and launchers run on CPU tensors) and the torch-free driver program (the
launchers on fixed inputs), plain or under sanitizers.

Build folders live under ``$DNERV_FAST_BUILD_DIR`` (else the system temp folder), keyed by
the content of every source and flag, so a changed kernel is rebuilt and an unchanged one is
reused.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from .rewrite import rewrite_tree

HERE = Path(__file__).resolve().parent
INCLUDE = HERE / "include"
CSRC = HERE.parents[1] / "dnerv_fast" / "csrc"
COMMON_FLAGS = ["-std=c++17", "-Wno-unknown-pragmas"]
# -fno-sanitize-recover: the first report ends the program with a non-zero status.
SANITIZERS = {
    "plain": ["-O1"],
    # Fiber stacks are annotated for ASan (runtime.cpp); shared arrays are heap blocks with
    # redzones. UBSan's undefined set includes signed overflow in index arithmetic.
    "asan": ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=all"],
    "tsan": ["-O1", "-g", "-fsanitize=thread", "-DHARNESS_TSAN"],
}


class HarnessUnavailable(RuntimeError):
    """The harness cannot be built here (no CUDA headers or no C++ compiler)."""


def cuda_include() -> Path:
    """Folder with cuda_runtime.h, cuda_fp16.h and cuda_bf16.h (host compilers can use them)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for c in candidates:
        if c and (Path(c) / "include" / "cuda_fp16.h").is_file():
            return Path(c) / "include"
    for c in sorted(Path("/usr/local").glob("cuda-*"), reverse=True):
        if (c / "include" / "cuda_fp16.h").is_file():
            return c / "include"
    try:  # the pip wheel nvidia-cuda-runtime-cu12 ships the headers
        import nvidia.cuda_runtime as rt  # type: ignore[import-not-found]

        inc = Path(list(rt.__path__)[0]) / "include"
        if (inc / "cuda_fp16.h").is_file():
            return inc
    except ImportError:
        pass
    raise HarnessUnavailable("no CUDA headers (cuda_fp16.h) found: set CUDA_HOME or install the "
                             "toolkit / nvidia-cuda-runtime-cu12")


def _root() -> Path:
    base = os.environ.get("DNERV_FAST_BUILD_DIR") or tempfile.gettempdir()
    return Path(base) / "cuda_harness"


def _key(parts: list[str], files: list[Path]) -> str:
    h = hashlib.sha256("\0".join(parts).encode())
    for f in sorted(files):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _sources(csrc: Path) -> list[Path]:
    return [p for p in csrc.iterdir() if p.suffix in (".cu", ".cuh", ".h")] + \
        [HERE / n for n in ("runtime.cpp", "driver.cpp", "selftest.cu", "rewrite.py")] + [INCLUDE / "cuda_harness.h"]


def build_driver(flavour: str = "plain", csrc: Path = CSRC) -> Path:
    """The driver program for ``flavour`` (a key of SANITIZERS) built from the kernels in
    ``csrc`` (a copy of dnerv_fast/csrc with a fault injected, in the fault tests). Objects
    are cached by content, so a fault in one .cu file recompiles that file only."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise HarnessUnavailable("no C++ compiler")
    flags = [*COMMON_FLAGS, *SANITIZERS[flavour]]
    inc = cuda_include()
    root = _root()
    out = root / f"driver-{flavour}-{_key([cxx, str(inc), *flags], _sources(csrc))}"
    exe = out / "driver"
    if exe.is_file():
        return exe
    src = out / "src"
    units = rewrite_tree(csrc, src)
    selftest = src / "selftest.cu.cpp"
    selftest.write_text(rewrite_tree_one(HERE / "selftest.cu"))
    units += [selftest, HERE / "driver.cpp"]
    headers = [p for p in src.iterdir() if p.suffix in (".h", ".cuh")] + [INCLUDE / "cuda_harness.h"]
    include = ["-I", str(INCLUDE), "-I", str(src), "-I", str(inc)]
    objects = root / "objects"
    objects.mkdir(parents=True, exist_ok=True)

    def compile_one(unit: Path, extra: list[str]) -> Path:
        obj = objects / f"{unit.name}-{flavour}-{_key([cxx, str(inc), *flags, *extra], [unit, *headers])}.o"
        if not obj.is_file():
            tmp = obj.with_suffix(f".{os.getpid()}.tmp")
            run([cxx, *flags, *extra, *include, "-c", str(unit), "-o", str(tmp)])
            tmp.replace(obj)
        return obj

    jobs = [(u, []) for u in units]
    # TSan must not see the scheduler's own bookkeeping as races between fibers: the runtime
    # is compiled without instrumentation (it still links the TSan runtime and annotates).
    jobs.append((HERE / "runtime.cpp", ["-fno-sanitize=thread"] if flavour == "tsan" else []))
    with ThreadPoolExecutor(max_workers=2) as pool:
        objs = list(pool.map(lambda j: compile_one(*j), jobs))
    tmp = out / f"driver.{os.getpid()}.tmp"
    run([cxx, *flags, *map(str, objs), "-o", str(tmp)])
    tmp.replace(exe)
    return exe


def rewrite_tree_one(path: Path) -> str:
    from .rewrite import rewrite

    return rewrite(path.read_text(), path.name)


def run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"harness build failed: {' '.join(cmd)}\n{r.stderr[-4000:]}")


@functools.lru_cache(maxsize=None)
def extension() -> ModuleType:
    """cuda_binding.cpp and the .cu files compiled for the CPU against the harness: the module
    the CUDA backend's wrappers call (same functions as the real CUDA extension)."""
    import torch.utils.cpp_extension as cpp

    inc = cuda_include()
    key = _key([str(inc)], [*_sources(CSRC), CSRC / "cuda_binding.cpp", *(INCLUDE / "c10" / "cuda").iterdir()])
    out = _root() / f"ext-{key}"
    src = out / "src"
    units = rewrite_tree(CSRC, src)
    binding = src / "cuda_binding.cpp"
    if not binding.exists() or binding.read_bytes() != (CSRC / "cuda_binding.cpp").read_bytes():
        shutil.copyfile(CSRC / "cuda_binding.cpp", binding)
    return cpp.load(
        name=f"dnerv_cuda_harness_{key}",
        sources=[str(binding), *map(str, units), str(HERE / "runtime.cpp")],
        # The shims (c10/cuda/*.h) come before torch's own include folders.
        extra_include_paths=[str(INCLUDE), str(src), str(inc)],
        extra_cflags=["-O2", *COMMON_FLAGS],
        build_directory=str(out),
        verbose=os.environ.get("DNERV_FAST_VERBOSE_BUILD") == "1",
    )
