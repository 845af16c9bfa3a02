"""Benchmark figures as data: one JSON file per result in ``docs/results/<name>.json``.

Every bench that produces figures for the documentation hands them to :func:`record`, which
adds what is needed to read them later: the command that produced them, the date, the
machine (CPU model, cores, torch version) and the git commit of the code measured. The
tables in README.md and docs/ are generated from these files by ``benches/make_tables.py``;
nothing there is copied by hand.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "docs" / "results"
# A note saying the figures were taken while other jobs shared the machine (so its timings
# are not evidence of speed): DNERV_RESULTS_NOTE="machine shared with other jobs".
NOTE_ENV = "DNERV_RESULTS_NOTE"


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``platform.processor()`` is often empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine the figures were taken on: enough to tell two machines apart."""
    info: dict[str, Any] = {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0))
                            if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                            "torch": torch.__version__,
                            "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def git_commit() -> str:
    """The commit of the measured code, with ``-dirty`` when the work tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "dnerv_fast", "benches")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("-dirty" if dirty else "")


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The shell command that reproduces a run of ``script`` (a path relative to the repo)."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", script, *map(shlex.quote, args)])


def record(name: str, figures: dict[str, Any], command: str, plot: Path | None = None,
           directory: Path = RESULTS_DIR) -> Path:
    """Write ``figures`` with their provenance to ``directory/<name>.json``, atomically, and
    the bench's ``plot`` of the same figures, if any, to ``directory/<name>.png``.

    ``command`` is what a reader types to produce the same figures. The note in
    ``$DNERV_RESULTS_NOTE``, if set, is stored with them.
    """
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"result name {name!r}: letters, digits, '_' and '-' only")
    data: dict[str, Any] = {
        "name": name, "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "commit": git_commit()}
    env = {k: v for k, v in sorted(os.environ.items())
           if k.startswith(("DNERV_FAST_", "OMP_NUM_THREADS")) and k != "DNERV_FAST_BUILD_DIR"}
    if env:          # settings that change what was measured (backend, threads, switches)
        data["env"] = env
    note = os.environ.get(NOTE_ENV)
    if note:
        data["note"] = note
    data.update(figures)
    directory.mkdir(parents=True, exist_ok=True)
    if plot is not None:
        png = directory / f"{name}.png"
        tmp = png.with_name(f".{png.name}.{os.getpid()}.tmp")
        tmp.write_bytes(Path(plot).read_bytes())
        os.replace(tmp, png)
    path = directory / f"{name}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"recorded {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def load(name: str, directory: Path = RESULTS_DIR) -> dict[str, Any]:
    """The recorded figures of ``name``."""
    return json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
