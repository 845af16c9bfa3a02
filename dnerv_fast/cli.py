"""The ``dnerv-fast`` command line.

:data:`COMMANDS` is the one place commands are registered: each names the module function
that adds its own arguments, the function that runs it, and the shared option groups it
takes (:data:`SHARED`). :func:`main` is the one exit policy (see the parser's epilog). No
command module imports torch at import time, so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

from . import __version__
from .options import shared_option


def _shared(name: str) -> Callable[[argparse.ArgumentParser], None]:
    return lambda p: shared_option(name).add_to(p)


# Option groups several commands take, defined in options.CommonSettings.
SHARED: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "output": _shared("overwrite"), "progress": _shared("quiet"), "device": _shared("device"),
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, except where there is none to show (None, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


@dataclass(frozen=True)
class Command:
    """One command: ``arguments`` and ``run`` are ``module:function`` names."""

    name: str
    help: str
    arguments: str
    run: str
    shared: tuple[str, ...] = ()


COMMANDS: tuple[Command, ...] = (
    Command("encode", "train one D-NeRV on videos and write a .dnerv file",
            "dnerv_fast.codec.commands:encode_arguments", "dnerv_fast.codec.commands:run_encode",
            ("output", "progress", "device")),
    Command("decode", "decode every video of a .dnerv file",
            "dnerv_fast.codec.commands:decode_arguments", "dnerv_fast.codec.commands:run_decode",
            ("output", "progress", "device")),
    Command("eval", "rate-distortion of a .dnerv file against x264/x265",
            "dnerv_fast.codec.commands:eval_arguments", "dnerv_fast.codec.commands:run_eval",
            ("output", "progress")),
    Command("info", "describe a .dnerv file, or list the model configurations",
            "dnerv_fast.codec.commands:info_arguments", "dnerv_fast.codec.commands:run_info"),
    Command("backends", "list the fused-op backends available here",
            "dnerv_fast.cli:backends_arguments", "dnerv_fast.cli:run_backends"),
    Command("profile", "measure decoding FPS, memory and where the time goes",
            "dnerv_fast.profiling.commands:profile_arguments",
            "dnerv_fast.profiling.commands:run_profile_command", ("output",)),
    Command("demo", "encode, decode and evaluate a generated clip end to end",
            "dnerv_fast.demo:demo_arguments", "dnerv_fast.demo:run_demo",
            ("output", "progress")),
)


def _function(spec: str) -> Callable:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def backends_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Every backend and kernel of the fused ops, what each runs, and whether it is "
                     "used here (and why not).")


def run_backends(args: argparse.Namespace) -> int:
    import torch

    from .ops import registry
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print("\n".join(registry.report(devices)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnerv-fast",
        description="D-NeRV neural video compression: encode videos into one model, decode, "
                    "evaluate, profile.",
        epilog="Exit status: 0 done, 1 failed (bad input, files or environment), 2 bad command "
               "line, 130 interrupted, 70 internal error (a bug: please report it).")
    parser.add_argument("--version", action="version", version=f"dnerv_fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help,
                           formatter_class=_HelpFormatter)
        _function(command.arguments)(p)
        for group in command.shared:
            SHARED[group](p)
        shared_option("debug").add_to(p)
        p.set_defaults(func=command.run)
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
    from .printable import printable
    print(f"dnerv-fast {command}: error: internal error (a bug in dnerv_fast "
          f"{__version__}, please report it): {type(exc).__name__}: {printable(exc)}; {where}",
          file=sys.stderr)


def _warning_printer(command: str) -> Callable[..., None]:
    """``warnings.showwarning`` for a command: the package's own warnings as one
    ``warning:`` line in the command line's words, any other as Python prints it."""
    from .option_names import as_flags
    original = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: object = None, line: str | None = None) -> None:
        if category.__module__.split(".")[0] == "dnerv_fast":
            print(f"dnerv-fast {command}: warning: {as_flags(str(message))}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)
    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every failure ends in one ``error:`` line on stderr and the exit
    status of the parser's epilog; argparse itself exits 2 on a bad command line."""
    from .allocator import keep_large_blocks_on_heap
    from .errors import DNeRVError, Interrupted, library_error
    from .option_names import as_flags
    from .printable import printable
    args = build_parser().parse_args(argv)
    try:
        keep_large_blocks_on_heap()
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(args.command)
            return int(_function(args.func)(args) or 0)
    except Interrupted as exc:
        print(f"dnerv-fast {args.command}: error: {printable(as_flags(str(exc)))}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"dnerv-fast {args.command}: error: interrupted; outputs not yet complete were "
              f"not written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DNeRVError as exc:
        print(f"dnerv-fast {args.command}: error: {printable(as_flags(str(exc)))}", file=sys.stderr)
        return EXIT_FAILED
    except (MemoryError, RuntimeError) as exc:
        known = library_error(exc, f"running {args.command}")
        if known is None:
            _report_bug(args.command, exc, args.debug or os.environ.get("DNERV_FAST_DEBUG") == "1")
            return EXIT_BUG
        print(f"dnerv-fast {args.command}: error: {printable(as_flags(str(known)))}",
              file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - anything else is a bug; say so in one line
        _report_bug(args.command, exc, args.debug or os.environ.get("DNERV_FAST_DEBUG") == "1")
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
