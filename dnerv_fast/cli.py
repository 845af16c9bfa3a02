"""The ``dnerv-fast`` command line: each command group lives in its own module."""
from __future__ import annotations

import argparse
import sys
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
                    "evaluate, profile.")
    parser.add_argument("--version", action="version", version=f"dnerv_fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("info", help="list model configurations and parameter counts").set_defaults(func=_info)
    sub.add_parser("backends", help="list the fused-op backends available here").set_defaults(func=_backends)
    for register in _command_groups():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors print one line and exit 2, with no traceback."""
    from .allocator import keep_large_blocks_on_heap
    from .codec.errors import CodecError
    args = build_parser().parse_args(argv)
    keep_large_blocks_on_heap()
    try:
        return int(args.func(args) or 0)
    except (CodecError, ValueError, FileNotFoundError) as exc:
        print(f"dnerv-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
