"""Every setting of the commands and of the API, defined once: name, type, default, bounds, help.

Each command's settings are a frozen dataclass (:class:`EncodeSettings`, :class:`DecodeSettings`,
:class:`EvalSettings`, :class:`MaskSettings`, :class:`ProfileSettings`, ...) whose fields carry
a :class:`Spec` made by :func:`setting`. From it come:

- the command line: :func:`add_options` adds one argparse option per field, whose ``type``
  checks the bounds, so a bad value exits 2 with the usage line;
- the API: the functions take the same names as keyword arguments, a settings object checks
  them (:meth:`Option.check`, raising :class:`~dnerv_fast.errors.UsageError` that names the
  Python argument), and their docstrings list them (:func:`docstring`);
- the usage page, docs/usage.md (``python tools/make_usage_doc.py``).

This module imports neither torch nor PyAV, so that ``--help`` stays fast; constants of
other modules that it repeats (the keyframe codecs and their default qualities, the weight
bits) are checked against them by ``tests/test_options.py``.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from dnerv_fast.errors import UsageError
from dnerv_fast.validation import check_choice, check_int, check_number, interval, show

MAX_EPOCHS = 1_000_000
MAX_BATCH = 65536
MAX_SEED = 2**63 - 1
MAX_FRAMES = 10_000_000
# AdamW steps every weight by about lr at first: a rate near 1 destroys any network here.
MAX_LR = 1.0

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
LOSSES = ("uvg", "ucf101")
RECIPES = ("default", "paper")                   # train.recipe.RECIPES
OUTPUT_FORMATS = ("mp4", "png", "yuv", "y4m")
ANCHORS = ("x264", "x265")
ANCHOR_PIX_FMTS = ("yuv444p", "yuv420p")          # codec.anchors.PIX_FMTS
# media.keyframes.CODECS: each codec's default quality, in the order --help lists them (the
# default codec first); None: the codec has no quality setting.
KEYFRAME_QUALITY: dict[str, int | None] = {"av1": 25, "hevc": 28, "webp": 85, "jpeg": 90,
                                           "png": None}
KEYFRAME_CODECS = tuple(KEYFRAME_QUALITY)
MIN_BITS, MAX_BITS = 4, 8                         # codec.quantize


@dataclass(frozen=True)
class Spec:
    """How one setting is checked and offered. ``lo``/``hi`` bound numbers (each end included
    unless ``lo_open``/``hi_open``); ``flag`` is the command line's spelling (default
    ``--name-with-dashes``; ``""``: API only); ``nargs`` as argparse's, for list settings."""

    help: str
    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    flag: str | None = None
    short: str | None = None
    nargs: str | None = None


def setting(default: Any, help: str, *, kind: type | None = None, **spec: Any) -> Any:
    """A dataclass field with its :class:`Spec` (``kind`` defaults to the default's type)."""
    if kind is None:
        kind = type(default[0]) if isinstance(default, tuple) else type(default)
    return field(default=default, metadata={"spec": Spec(help, kind, **spec)})


@dataclass(frozen=True)
class Option:
    """One setting of a settings class, with its name and default."""

    name: str
    default: Any
    spec: Spec

    @property
    def flag(self) -> str:
        if self.spec.flag is not None:
            return self.spec.flag
        return "--" + self.name.replace("_", "-")

    @property
    def bounds(self) -> str:
        """The allowed values, in words ("" when any value of the type goes)."""
        s = self.spec
        if s.choices is not None:
            return ", ".join(s.choices)
        if s.lo is None:
            return ""
        if s.kind is int:
            return f"{int(s.lo)}..{int(s.hi)}" if s.hi is not None else f">= {int(s.lo)}"
        return interval(s.lo, s.hi, s.lo_open, s.hi_open)

    def _check_one(self, name: str, value: Any) -> Any:
        s = self.spec
        if s.choices is not None:
            return check_choice(name, value, s.choices)
        if s.kind is bool:
            if not isinstance(value, bool):
                raise UsageError(f"{name} must be True or False, got {show(value)}")
            return value
        if s.kind is int:
            return check_int(name, value, int(s.lo if s.lo is not None else -2**63),
                             int(s.hi if s.hi is not None else 2**63 - 1))
        if s.kind is float:
            return check_number(name, value, s.lo if s.lo is not None else -float("inf"), s.hi,
                                lo_open=s.lo_open, hi_open=s.hi_open)
        if not isinstance(value, s.kind):
            raise UsageError(f"{name} must be a {s.kind.__name__}, got {show(value)}")
        return value

    def check(self, value: Any, name: str | None = None) -> Any:
        """``value`` normalised, or :class:`UsageError` naming ``name`` (default: the Python
        name). None passes where the default is None; a list setting is checked per item."""
        name = name or self.name
        if value is None and self.default is None:
            return None
        if self.spec.nargs is not None:
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise UsageError(f"{name} must be a list, got {show(value)}")
            if self.spec.nargs == "+" and not value:
                raise UsageError(f"{name} must not be empty")
            return tuple(self._check_one(f"{name}[{i}]", v) for i, v in enumerate(value))
        return self._check_one(name, value)

    def parse(self, text: str) -> Any:
        """One command-line value: converted, then checked (argparse's ``type``)."""
        try:
            value = self.spec.kind(text)
            if self.spec.kind is float:
                return check_number(self.flag, value, self.spec.lo if self.spec.lo is not None
                                    else -float("inf"), self.spec.hi, lo_open=self.spec.lo_open,
                                    hi_open=self.spec.hi_open)
            return self._check_one(self.flag, value)
        except ValueError as e:
            if isinstance(e, UsageError):        # argparse names the flag already
                raise argparse.ArgumentTypeError(str(e).removeprefix(f"{self.flag} ")) from None
            raise argparse.ArgumentTypeError(
                f"takes {'an integer' if self.spec.kind is int else 'a number'}, got {text!r}"
            ) from None

    def add_to(self, parser: argparse.ArgumentParser | Any) -> None:
        s = self.spec
        names = [n for n in (s.short, self.flag) if n]
        help = s.help
        if s.kind is bool:
            action = "store_false" if self.default else "store_true"
            parser.add_argument(*names, dest=self.name, action=action, help=help)
            return
        kwargs: dict[str, Any] = {"dest": self.name, "default": self.default, "help": help}
        if s.choices is not None:
            kwargs["choices"] = s.choices
        elif s.kind in (int, float):
            kwargs["type"] = self.parse
        if s.metavar:
            kwargs["metavar"] = s.metavar
        elif s.kind in (int, float) and s.choices is None:
            kwargs["metavar"] = self.name.upper()
        if s.nargs:
            kwargs["nargs"] = s.nargs
            kwargs["default"] = list(self.default) if self.default is not None else None
        parser.add_argument(*names, **kwargs)


def options(settings: type | Any) -> list[Option]:
    """The options of a settings class (or instance), in field order."""
    return [Option(f.name, f.default, f.metadata["spec"]) for f in dataclasses.fields(settings)
            if "spec" in f.metadata]


def option(settings: type, name: str) -> Option:
    return next(o for o in options(settings) if o.name == name)


def check_all(settings: Any) -> None:
    """Check and normalise every field of a frozen settings instance (its ``__post_init__``)."""
    for o in options(settings):
        object.__setattr__(settings, o.name, o.check(getattr(settings, o.name)))


def add_options(parser: argparse.ArgumentParser | Any, settings: type,
                skip: Sequence[str] = ()) -> None:
    """One argparse option per field of ``settings`` that has a flag."""
    for o in options(settings):
        if o.name not in skip and o.flag:
            o.add_to(parser)


def from_args(settings: type, args: argparse.Namespace, **extra: Any) -> Any:
    """An instance of ``settings`` from parsed arguments (fields without a flag keep their
    default unless given in ``extra``)."""
    values = {o.name: getattr(args, o.name) for o in options(settings)
              if o.flag and hasattr(args, o.name)}
    return settings(**{**values, **extra})


def build(settings: type, given: Any | None, overrides: dict[str, Any]) -> Any:
    """``given`` (or the defaults) with ``overrides`` applied: the API's keyword arguments.
    An unknown keyword is a TypeError, as for any Python function."""
    known = {o.name for o in options(settings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; the settings "
                        f"are: {', '.join(sorted(known))}")
    base = given if given is not None else settings()
    return dataclasses.replace(base, **overrides) if overrides else base


def _python_help(text: str) -> str:
    """Help text with ``--flag-name`` spelled as the keyword ``flag_name``."""
    return re.sub(r"--([a-z][a-z0-9-]*)", lambda m: "``" + m.group(1).replace("-", "_") + "``",
                  text)


def docstring(settings: type, indent: str = "    ") -> str:
    """The settings as an API docstring section: name, default, bounds, help."""
    lines = []
    for o in options(settings):
        bounds = f"; {o.bounds}" if o.bounds else ""
        lines.append(f"{indent}``{o.name}`` (default ``{o.default!r}``{bounds}): "
                     f"{_python_help(o.spec.help)}")
    return "\n".join(lines)


def keyframe_setting(codec: str, quality: int) -> str:
    """A keyframe quality named as its codec names it: ``av1 CRF 25 (lower is better)``."""
    if codec in ("hevc", "av1"):
        return f"{codec} CRF {quality} (lower is better)"
    if KEYFRAME_QUALITY.get(codec) is None:
        return f"{codec} (lossless)"
    return f"{codec} quality {quality} (higher is better)"


# --------------------------------------------------------------------------- the settings


def _quality_help() -> str:
    pil = [c for c, q in KEYFRAME_QUALITY.items() if c in ("webp", "jpeg")]
    crf = [c for c, q in KEYFRAME_QUALITY.items() if c in ("hevc", "av1")]
    return (f"{'/'.join(pil)}: quality 1-100 (higher is better; default "
            f"{'/'.join(str(KEYFRAME_QUALITY[c]) for c in pil)}); {'/'.join(crf)}: CRF "
            f"(lower is better; hevc 0-51, av1 1-63; default "
            f"{'/'.join(str(KEYFRAME_QUALITY[c]) for c in crf)}); png: lossless")


@dataclass(frozen=True)
class EncodeSettings:
    """What ``dnerv-fast encode`` and :func:`dnerv_fast.encode` do with the videos."""

    size: str = setting("tiny", "model configuration: tiny, uvg-XS..XL, ucf101-S..L "
                                "(dnerv-fast info)")
    target_bpp: float | None = setting(
        None, "make the file this many bits per pixel, every byte counted: scales the widths "
              "of --size and picks the keyframe quality (unless --keyframe-quality is given); "
              "prints what it chose and why", kind=float, lo=0, lo_open=True, metavar="BPP")
    epochs: int = setting(100, "passes over every clip", lo=1, hi=MAX_EPOCHS)
    keyframe_codec: str = setting("av1", "intra codec of the keyframes (av1: the fewest bytes "
                                         "at equal PSNR, see docs/codec.md)",
                                  choices=KEYFRAME_CODECS)
    keyframe_quality: int | None = setting(None, _quality_help(), kind=int, lo=0, hi=100,
                                           metavar="Q")
    bits: int = setting(8, "weight bits (2^bits - 1 levels)", lo=MIN_BITS, hi=MAX_BITS)
    qat: float = setting(0.2, "share of --epochs spent last training through the --bits "
                              "quantiser (quantisation-aware training, straight-through "
                              "estimator); 0: off", lo=0, hi=1, hi_open=True, metavar="SHARE")
    prune: float = setting(0.0, "fraction of weights set to zero (smallest magnitudes, biases "
                                "kept), cut before the --qat epochs, which fine-tune the rest",
                           lo=0, hi=1, hi_open=True, metavar="FRACTION")
    recipe: str = setting("default", "training recipe: default picks the peak learning rate "
                                     "from the run's optimiser steps and network size "
                                     "(docs/training.md); paper is the published one (lr 5e-4, "
                                     "warm-up 0.2, cosine, batch 32, AdamW)", choices=RECIPES)
    batch_size: int | None = setting(None, "clips per step (in all, over the processes under "
                                           "torchrun); default: the recipe's (8, paper 32)",
                                     kind=int, lo=1, hi=MAX_BATCH)
    lr: float | None = setting(None, "peak learning rate (warm-up, then cosine); default: the "
                                     "recipe's", kind=float, lo=0, lo_open=True, hi=MAX_LR)
    warmup: float | None = setting(None, "share of the run warming the learning rate up; "
                                         "default: the recipe's (0.2)", kind=float, lo=0, hi=1,
                                   hi_open=True, metavar="SHARE")
    loss: str = setting("uvg", "the loss the paper trains that data set with: 0.7 L1 + 0.3 "
                               "(1 - SSIM) for uvg, MSE + 0.03 (1 - SSIM) for ucf101",
                        choices=LOSSES)
    seed: int = setting(0, "seed of weights and clip order", lo=0, hi=MAX_SEED)
    max_frames: int | None = setting(None, "use only the first frames of each video (default: "
                                           "all)", kind=int, lo=1, hi=MAX_FRAMES, metavar="N")
    checkpoint_every: int = setting(0, "save OUTPUT.ckpt every N epochs, 0: only at the end "
                                       "(it is removed after success)", lo=0, hi=MAX_EPOCHS,
                                    metavar="N")
    precision: str = setting("fp32", "type training computes in; weights and optimiser stay "
                                     "fp32 (bf16 on recent GPUs; fp16 scales the loss)",
                             choices=PRECISIONS)
    compile: bool = setting(False, "train the network under torch.compile (first steps slower)")
    resume: bool = setting(False, "continue training from OUTPUT.ckpt")
    keep_checkpoint: bool = setting(False, "keep OUTPUT.ckpt after success; --resume from a copy "
                                           "of it with other --bits/--prune re-quantises without "
                                           "training again")

    def __post_init__(self) -> None:
        check_all(self)


@dataclass(frozen=True)
class MaskSettings:
    """Inpainting masks of ``encode`` and ``eval``."""

    mask_boxes: int | None = setting(None, "hide COUNT random square boxes in every frame",
                                     kind=int, lo=1, hi=10_000, metavar="COUNT")
    mask_box_size: int | None = setting(None, "side of each box (default 32 with --mask-boxes)",
                                        kind=int, lo=1, hi=65536, metavar="PIXELS")
    mask_seed: int | None = setting(None, "box placement seed (default 0)", kind=int, lo=0,
                                    hi=MAX_SEED, metavar="SEED")
    mask_video: tuple[str, ...] | None = setting(
        None, "one mask video (file or frame folder) per video, same size and frames; pixels "
              "of 128 or more are holes", kind=str, nargs="+", metavar="MASK")

    def __post_init__(self) -> None:
        check_all(self)


DEFAULT_BOX_SIZE = 32


@dataclass(frozen=True)
class DecodeSettings:
    """How ``dnerv-fast decode`` and :func:`dnerv_fast.decode` write the videos."""

    fmt: str = setting("mp4", "format of each video in an output folder (a single-file "
                              "output's extension gives its own)", choices=OUTPUT_FORMATS,
                       flag="--format")
    dtype: str = setting("fp32", "network precision; bf16/fp16 stay within a few hundredths of "
                                 "a dB of fp32", choices=PRECISIONS)

    def __post_init__(self) -> None:
        check_all(self)


@dataclass(frozen=True)
class EvalSettings:
    """What ``dnerv-fast eval`` and :func:`dnerv_fast.evaluate` compare with."""

    crfs: tuple[int, ...] = setting((23, 28, 33, 38), "x264/x265 CRFs of the anchor points",
                                    lo=0, hi=51, nargs="+", flag="--crf", metavar="CRF")
    anchors: tuple[str, ...] = setting(ANCHORS, "classical codecs to compare with",
                                       choices=ANCHORS, nargs="*")
    preset: str = setting("medium", "x264/x265 preset")
    pix_fmts: tuple[str, ...] = setting(("yuv444p",), "anchor pixel formats; yuv420p points "
                                        "are named x264-420, x265-420 (RGB -> yuv420p -> RGB "
                                        "alone stops near 45 dB)", choices=ANCHOR_PIX_FMTS,
                                        nargs="+", flag="--pix-fmt")

    def __post_init__(self) -> None:
        check_all(self)


@dataclass(frozen=True)
class CommonSettings:
    """Options several commands share (which ones: :data:`dnerv_fast.cli.COMMANDS`)."""

    overwrite: bool = setting(False, "replace outputs of the same name; other files in an "
                                     "output folder stay")
    quiet: bool = setting(False, "no progress output", short="-q")
    device: str = setting("auto", "where the network runs (auto: a GPU when there is one; "
                                  "under torchrun, each process's GPU cuda:LOCAL_RANK)",
                          choices=DEVICES)
    debug: bool = setting(False, "print the full traceback of an internal error")


def shared_option(name: str) -> Option:
    return option(CommonSettings, name)


def iter_settings() -> Iterator[type]:
    """Every settings class of this module (for the usage page and the tests)."""
    yield from (EncodeSettings, MaskSettings, DecodeSettings, EvalSettings, CommonSettings)
