"""Model configurations: the paper's named sizes, plus a tiny one for tests and demos."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from dnerv_fast.validation import check_int, check_number

UVG_MEAN = (0.4519, 0.4505, 0.4519)
UVG_STD = (0.2434, 0.2547, 0.2958)
UCF101_MEAN = (0.3986, 0.3829, 0.3546)
UCF101_STD = (0.2805, 0.2747, 0.2787)


# Bounds on every configuration field: far above the paper's sizes (uvg-XL: fc_dim 382,
# 256x320 patches, 8-frame clips), low enough that a configuration read from a file cannot
# ask for an absurd model before its parameter count is checked.
MAX_WIDTH = 4096
MIN_DECODER_WIDTH = 4
MAX_CLIP_LEN = 64
MAX_EMBED_LEVELS = 1024
MAX_EMBED_BASE = 4.0
MAX_EMBED_EXPONENT = 30
MAX_EXPANSION = 16.0
MAX_STAGES = 8
MAX_STRIDE = 16
MAX_PATCH_SIDE = 4096


def _int_field(name: str, value: Any, lo: int, hi: int) -> int:
    return check_int(name, value, lo, hi, ValueError)


def _float_field(name: str, value: Any, lo: float, hi: float) -> float:
    """A finite number in (lo, hi]."""
    return check_number(name, value, lo, hi, lo_open=True, error=ValueError)


def _seq(name: str, value: Any, count: int) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) != count:
        raise ValueError(f"{name} must be a list of {count} numbers, got {value!r}")
    return tuple(value)


def _int_tuple(name: str, value: Any, min_len: int, max_len: int, lo: int, hi: int
               ) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or \
            not min_len <= len(value) <= max_len:
        count = min_len if min_len == max_len else f"{min_len}..{max_len}"
        raise ValueError(f"{name} must be a list of {count} integers, got {value!r}")
    return tuple(_int_field(f"{name}[{i}]", v, lo, hi) for i, v in enumerate(value))


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a D-NeRV network's shape and its input normalisation.

    The defaults reproduce the paper: 256x320 patches, 8-frame clips, strides 4,2,2,2,2,
    a 240-level positional encoding with base 1.25, a 512-wide stem hidden layer, a 64-wide
    keyframe encoder and a decoder floor (``lower_width``) of 32 channels. ``fc_dim``,
    ``stem_dim``, ``lower_width`` and ``encoder_dim`` are the widths a rate target scales
    (:mod:`dnerv_fast.codec.rate`).
    """

    fc_dim: int
    stem_dim: int = 512
    strides: tuple[int, ...] = (4, 2, 2, 2, 2)
    patch_size: tuple[int, int] = (256, 320)
    clip_len: int = 8
    expansion: float = 2.0
    lower_width: int = 32
    encoder_dim: int = 64
    embed_levels: int = 240
    embed_base: float = 1.25
    mean: tuple[float, float, float] = UVG_MEAN
    std: tuple[float, float, float] = UVG_STD
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        """Check every field's type and range (a configuration may come from a stranger's
        file) and normalise sequences to tuples."""
        _int_field("fc_dim", self.fc_dim, 1, MAX_WIDTH)
        _int_field("stem_dim", self.stem_dim, 1, MAX_WIDTH)
        _int_field("clip_len", self.clip_len, 2, MAX_CLIP_LEN)
        _int_field("lower_width", self.lower_width, 1, MAX_WIDTH)
        _int_field("encoder_dim", self.encoder_dim, 1, MAX_WIDTH)
        _int_field("embed_levels", self.embed_levels, 1, MAX_EMBED_LEVELS)
        _float_field("expansion", self.expansion, 0.0, MAX_EXPANSION)
        _float_field("embed_base", self.embed_base, 1.0, MAX_EMBED_BASE)
        object.__setattr__(self, "strides", _int_tuple("strides", self.strides, 1, MAX_STAGES,
                                                       1, MAX_STRIDE))
        object.__setattr__(self, "patch_size", _int_tuple("patch_size", self.patch_size, 2, 2,
                                                          1, MAX_PATCH_SIDE))
        object.__setattr__(self, "mean", tuple(_float_field(f"mean[{i}]", v, -1e3, 1e3)
                                               for i, v in enumerate(_seq("mean", self.mean, 3))))
        object.__setattr__(self, "std", tuple(_float_field(f"std[{i}]", v, 0.0, 1e3)
                                              for i, v in enumerate(_seq("std", self.std, 3))))
        if not isinstance(self.name, str) or len(self.name) > 64:
            raise ValueError("name must be a string of at most 64 characters")
        if self.embed_levels * math.log10(self.embed_base) > MAX_EMBED_EXPONENT:
            raise ValueError(f"embed_base ** embed_levels must stay below 1e{MAX_EMBED_EXPONENT} "
                             f"(the positional encoding is float32), got "
                             f"{self.embed_base} ** {self.embed_levels}")
        factor = self.total_stride
        if any(p % factor or p < factor for p in self.patch_size):
            raise ValueError(f"patch_size {self.patch_size} must be a positive multiple of the "
                             f"total stride {factor} in each side")
        widths = self.stage_widths()
        if not MIN_DECODER_WIDTH <= min(widths) <= max(widths) <= MAX_WIDTH:
            raise ValueError(f"decoder widths {widths} must be in {MIN_DECODER_WIDTH}..{MAX_WIDTH} "
                             f"(each stage's flow head is a quarter as wide)")

    @property
    def total_stride(self) -> int:
        return math.prod(self.strides)

    @property
    def stem_grid(self) -> tuple[int, int]:
        """(height, width) of the stem output, the coarsest decoder resolution."""
        return self.patch_size[0] // self.total_stride, self.patch_size[1] // self.total_stride

    @property
    def embed_length(self) -> int:
        return 2 * self.embed_levels

    def stage_widths(self) -> list[int]:
        """Channels entering each decoder stage, then the channels of the final feature."""
        widths = [self.fc_dim + self.encoder_dim]
        width = self.fc_dim
        for i, stride in enumerate(self.strides):
            width = int(width * self.expansion) if i == 0 else max(round(width / stride), self.lower_width)
            widths.append(width)
        return widths

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ValueError(f"a configuration must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown configuration fields: {sorted(unknown)}")
        return cls(**data)


_UVG_DIMS = {"XS": 107, "S": 166, "M": 213, "L": 291, "XL": 382}
_UCF_DIMS = {"S": 198, "M": 281, "L": 361}

CONFIGS: dict[str, ModelConfig] = {
    **{f"uvg-{k}": ModelConfig(fc_dim=v, name=f"uvg-{k}") for k, v in _UVG_DIMS.items()},
    **{f"ucf101-{k}": ModelConfig(fc_dim=v, mean=UCF101_MEAN, std=UCF101_STD, name=f"ucf101-{k}")
       for k, v in _UCF_DIMS.items()},
    # Small enough for CPU tests and demos: 64x64 patches, every decoder width at the 32 floor.
    "tiny": ModelConfig(fc_dim=16, patch_size=(64, 64), name="tiny"),
}

# Parameter counts of the model sizes the paper reports, in millions: a test of fidelity.
PUBLISHED_PARAMS_M = {"uvg-XS": 8.018, "uvg-S": 15.955, "uvg-M": 24.198, "uvg-L": 41.660,
                      "uvg-XL": 67.953, "ucf101-S": 21.389, "ucf101-M": 39.144, "ucf101-L": 61.303}


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """A named configuration, optionally with fields replaced (``patch_size=(128, 128)``)."""
    key = next((k for k in CONFIGS if k.lower() == name.lower()), None)
    if key is None:
        raise ValueError(f"unknown configuration {name!r}; choose one of: {', '.join(CONFIGS)}")
    config = CONFIGS[key]
    return dataclasses.replace(config, **overrides) if overrides else config
