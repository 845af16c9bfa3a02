"""The ``dnerv-fast`` command line: each command group lives in its own module."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from typing import Callable, Sequence

from . import __version__


def _info(args: argparse.Namespace) -> int:
    from .configs import CONFIGS, PUBLISHED_PARAMS_M
    from .model import DNeRV
    print(f"{'name':<10} {'fc_dim':>6} {'patch':>9} {'params (M)':>11} {'paper (M)':>10}  widths")
    for name, config in CONFIGS.items():
        params = sum(p.numel() for p in DNeRV(config).parameters()) / 1e6
        paper = PUBLISHED_PARAMS_M.get(name)
        patch = "x".join(map(str, config.patch_size))
        print(f"{name:<10} {config.fc_dim:>6} {patch:>9} {params:>11.3f} {paper or '-':>10}  "
              f"{config.stage_widths()}")
    return 0


def _backends(args: argparse.Namespace) -> int:
    import torch

    from . import ops
    print(f"requested: {ops.requested_backend()} (set {ops.ENV_VAR} or use --backend where offered)")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        chosen, _ = ops.resolve(device)
        print(f"{device}: available {ops.available_backends(device)}; auto picks {chosen!r}")
    return 0


def _command_groups() -> list[Callable[[argparse._SubParsersAction], None]]:
    """``register(subparsers)`` of every command module (imported lazily by each command)."""
    from . import demo
    from .codec import commands as codec_commands
    from .profiling import commands as profile_commands
    return [codec_commands.register, profile_commands.register, demo.register]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnerv-fast",
        description="D-NeRV neural video compression: encode videos into one model, decode, "
                    "evaluate, profile.",
        epilog="Exit status: 0 done, 1 failed (bad input, files or environment), 2 bad command "
               "line, 130 interrupted, 70 internal error (a bug: please report it).")
    parser.add_argument("--version", action="version", version=f"dnerv_fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("info", help="list model configurations and parameter counts").set_defaults(func=_info)
    sub.add_parser("backends", help="list the fused-op backends available here").set_defaults(func=_backends)
    for register in _command_groups():
        register(sub)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true",
                             help="show the full traceback of an internal error")
    return parser


EXIT_FAILED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 70, 130


def _report_bug(command: str, exc: BaseException, debug: bool) -> None:
    """One line naming an unexpected error as a bug, the traceback in a log file (or, with
    ``--debug``, on stderr)."""
    trace = "".join(traceback.format_exception(exc))
    if debug:
        sys.stderr.write(trace)
        where = "the traceback is above"
    else:
        try:
            fd, log = tempfile.mkstemp(prefix="dnerv-fast-error-", suffix=".log")
            with os.fdopen(fd, "w") as f:
                f.write(trace)
            where = f"the traceback is in {log}"
        except OSError:
            where = "run again with --debug for the traceback"
    print(f"dnerv-fast {command}: error: internal error (a bug in dnerv_fast "
          f"{__version__}, please report it): {type(exc).__name__}: {exc}; {where}",
          file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every failure ends in one ``error:`` line on stderr and the exit
    status of the parser's epilog; argparse itself exits 2 on a bad command line."""
    from .allocator import keep_large_blocks_on_heap
    from .codec.errors import CodecError, Interrupted
    args = build_parser().parse_args(argv)
    try:
        keep_large_blocks_on_heap()
        return int(args.func(args) or 0)
    except Interrupted as exc:
        print(f"dnerv-fast {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"dnerv-fast {args.command}: error: interrupted; outputs not yet complete were "
              f"not written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CodecError as exc:
        print(f"dnerv-fast {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except MemoryError:
        print(f"dnerv-fast {args.command}: error: out of memory", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - anything else is a bug; say so in one line
        _report_bug(args.command, exc, args.debug or os.environ.get("DNERV_FAST_DEBUG") == "1")
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
