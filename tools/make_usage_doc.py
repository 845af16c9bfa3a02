"""Write docs/usage.md from the command-line parser and the settings of dnerv_fast.options.

    python tools/make_usage_doc.py          # rewrite docs/usage.md
    python tools/make_usage_doc.py --check  # exit 1 if docs/usage.md is out of date

``tests/test_usage_doc.py`` runs the check, so the page cannot drift from the code.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "usage.md"

HEADER = """\
# Usage

Every command of `dnerv-fast` and the settings of the Python API. This page is generated
from the option definitions (`dnerv_fast/options.py`) and the parser (`dnerv_fast/cli.py`)
by `python tools/make_usage_doc.py`; edit those, not this page.

Exit status of every command: 0 done, 1 failed (bad input, files or environment: one
`error:` line), 2 bad command line (a value the parser can check, with the usage line),
130 interrupted, 70 internal error (a bug: the traceback goes to a log file).
"""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _allowed(action: argparse.Action) -> str:
    option = getattr(action.type, "__self__", None)      # options.Option.parse
    if option is not None and option.bounds:
        return option.bounds
    if action.choices is not None:
        return ", ".join(map(str, action.choices))
    return ""


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default is None or action.default is argparse.SUPPRESS:
        return ""
    value = action.default
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _command(name: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## dnerv-fast {name}", "", parser.description or "", "", "```text",
             parser.format_usage().strip(), "```", "",
             "| argument | default | allowed | meaning |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        names = ", ".join(action.option_strings) or action.metavar or action.dest
        lines.append(f"| `{_cell(names)}` | {_cell(_default(action))} | "
                     f"{_cell(_allowed(action))} | {_cell(action.help or '')} |")
    return lines + [""]


def _settings(title: str, settings: type, function: str) -> list[str]:
    from dnerv_fast.options import options
    lines = [f"### {title}", "", f"Keyword arguments of `{function}` "
             f"(fields of `dnerv_fast.options.{settings.__name__}`).", "",
             "| keyword | default | allowed | meaning |", "|---|---|---|---|"]
    for o in options(settings):
        lines.append(f"| `{o.name}` | `{o.default!r}` | {_cell(o.bounds)} | "
                     f"{_cell(o.spec.help)} |")
    return lines + [""]


def render() -> str:
    os.environ["COLUMNS"] = "100"        # argparse wraps the usage line at the terminal width
    sys.path.insert(0, str(ROOT))
    from dnerv_fast.cli import COMMANDS, build_parser
    from dnerv_fast.options import DecodeSettings, EncodeSettings, EvalSettings
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    lines = [HEADER, "## Commands", ""]
    lines += [f"- `{c.name}`: {c.help}" for c in COMMANDS] + [""]
    for command in COMMANDS:
        lines += _command(command.name, subparsers[command.name])
    lines += ["## Python API", "",
              "`dnerv_fast.encode`, `decode` and `evaluate` take the commands' settings as "
              "keyword arguments of the same names (a flag `--max-frames` is the keyword "
              "`max_frames`); a bad value raises `dnerv_fast.errors.UsageError` (a "
              "`ValueError`) naming the keyword. Every error a user can cause is a "
              "`dnerv_fast.errors.DNeRVError`.", ""]
    lines += _settings("encode", EncodeSettings, "dnerv_fast.encode(videos, out_path, ...)")
    lines += _settings("decode", DecodeSettings, "dnerv_fast.decode(path, out_dir, ...)")
    lines += _settings("evaluate", EvalSettings, "dnerv_fast.evaluate(path, sources, ...)")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the page is current")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is out of date: run python tools/make_usage_doc.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
