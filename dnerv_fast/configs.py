"""Model configurations: the paper's named sizes, plus a tiny one for tests and demos."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

UVG_MEAN = (0.4519, 0.4505, 0.4519)
UVG_STD = (0.2434, 0.2547, 0.2958)
UCF101_MEAN = (0.3986, 0.3829, 0.3546)
UCF101_STD = (0.2805, 0.2747, 0.2787)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a D-NeRV network's shape and its input normalisation.

    The defaults reproduce the paper: 256x320 patches, 8-frame clips, strides 4,2,2,2,2,
    a 240-level positional encoding with base 1.25.
    """

    fc_dim: int
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
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        object.__setattr__(self, "patch_size", tuple(int(s) for s in self.patch_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.fc_dim < 1 or self.clip_len < 2:
            raise ValueError(f"fc_dim must be >= 1 and clip_len >= 2, got {self.fc_dim}, {self.clip_len}")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"strides must be positive, got {self.strides}")
        factor = self.total_stride
        if any(p % factor or p < factor for p in self.patch_size):
            raise ValueError(f"patch_size {self.patch_size} must be a positive multiple of the "
                             f"total stride {factor} in each side")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std positive")

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

# Parameter counts published with the paper (SPEC.md), in millions: a test of fidelity.
PUBLISHED_PARAMS_M = {"uvg-XS": 8.018, "uvg-S": 15.955, "uvg-M": 24.198, "uvg-L": 41.660,
                      "uvg-XL": 67.953, "ucf101-S": 21.389, "ucf101-M": 39.144, "ucf101-L": 61.303}


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """A named configuration, optionally with fields replaced (``patch_size=(128, 128)``)."""
    key = next((k for k in CONFIGS if k.lower() == name.lower()), None)
    if key is None:
        raise ValueError(f"unknown configuration {name!r}; choose one of: {', '.join(CONFIGS)}")
    config = CONFIGS[key]
    return dataclasses.replace(config, **overrides) if overrides else config
