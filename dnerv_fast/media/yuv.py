"""Raw planar YUV: formats, file-name conventions, a memory-mapped reader and colour conversion.

A raw ``.yuv`` file is frames of planes one after the other (Y, then U and V at the chroma
format's subsampling), 8-bit samples as bytes, deeper samples as little-endian 16-bit words.
Nothing in the file says its size or format, so they come from its name or from options:

- the UVG / Vooya form ``Beauty_1920x1080_120fps_420_8bit_YUV.yuv`` (``WxH``, ``Nfps``,
  ``420``/``422``/``444``/``400``, ``Nbit``), the HEVC test-sequence form
  ``BasketballDrive_1920x1080_50.yuv`` (a bare number after the size is the frame rate),
  and FFmpeg pixel-format tokens such as ``yuv420p10le`` or ``gray``;
- options (``size``, ``pix_fmt``, ``fps``) fill in what the name does not say; where both
  say something and differ, the file is refused rather than guessed.

Defaults where neither says: 4:2:0, 8 bits, 25 fps. A file is read one frame at a time
through :class:`numpy.memmap`, never whole.

Colour: :func:`yuv_to_rgb` / :func:`rgb_to_yuv` follow ITU-T H.273 with the BT.601 or
BT.709 luma weights, full range (``Y = (2^n - 1) E'y``, ``C = (2^n - 1) E'c + 2^(n-1)``) or
limited range (``Y = (219 E'y + 16) 2^(n-8)``, ``C = (224 E'c + 128) 2^(n-8)``). Chroma is
upsampled by repeating each sample and downsampled by the mean of the samples it covers (at
the right and bottom edge of an odd size, of those that exist).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnerv_fast.errors import VideoReadError

CHROMAS = ("400", "420", "422", "444")
BIT_DEPTHS = (8, 10, 12, 16)
SUBSAMPLING = {"400": (1, 1), "420": (2, 2), "422": (2, 1), "444": (1, 1)}  # (x, y)
MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}           # (Kr, Kb)
RANGES = ("full", "limited")
DEFAULT_MATRIX = "bt709"
DEFAULT_RANGE = "full"
DEFAULT_CHROMA = "420"
DEFAULT_BIT_DEPTH = 8
DEFAULT_YUV_FPS = 25.0
MAX_SIDE = 8192
_PIX_FMT = re.compile(r"^(?:(gray)|yuv(4[024][024])p)(?:(\d+)(le|be))?$")


@dataclass(frozen=True)
class YuvFormat:
    """A planar YUV layout: chroma format (``"400"``, ``"420"``, ``"422"``, ``"444"``) and
    bits per sample."""

    chroma: str = DEFAULT_CHROMA
    bit_depth: int = DEFAULT_BIT_DEPTH

    def __post_init__(self) -> None:
        if self.chroma not in CHROMAS:
            raise VideoReadError(f"unsupported chroma format '{self.chroma}' (use "
                                 f"{', '.join(CHROMAS)})")
        if self.bit_depth not in BIT_DEPTHS:
            raise VideoReadError(f"unsupported bit depth {self.bit_depth} (use "
                                 f"{', '.join(map(str, BIT_DEPTHS))})")

    @classmethod
    def parse(cls, pix_fmt: str) -> YuvFormat:
        """The format of an FFmpeg planar pixel-format name: ``yuv420p``, ``yuv422p10le``,
        ``yuv444p16le``, ``gray``, ``gray10le``... (little-endian only)."""
        m = _PIX_FMT.match(pix_fmt.strip().lower())
        if m is None or (m.group(2) and m.group(2) not in CHROMAS) or m.group(4) == "be":
            raise VideoReadError(
                f"unsupported pixel format '{pix_fmt}': raw YUV is read as planar yuv420p, "
                f"yuv422p, yuv444p or gray, 8 bits or 10/12/16 little-endian (e.g. "
                f"yuv420p10le)")
        bits = int(m.group(3)) if m.group(3) else 8
        if bits == 8 and m.group(3):
            raise VideoReadError(f"unsupported pixel format '{pix_fmt}'")
        return cls("400" if m.group(1) else m.group(2), bits)

    @property
    def pix_fmt(self) -> str:
        """The FFmpeg name of this layout (``yuv420p10le``)."""
        base = "gray" if self.chroma == "400" else f"yuv{self.chroma}p"
        return base if self.bit_depth == 8 else f"{base}{self.bit_depth}le"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.bit_depth == 8 else np.dtype("<u2")

    @property
    def peak(self) -> int:
        return (1 << self.bit_depth) - 1

    @property
    def planes(self) -> int:
        return 1 if self.chroma == "400" else 3

    def plane_shapes(self, width: int, height: int) -> list[tuple[int, int]]:
        """(height, width) of each plane of a ``width`` x ``height`` frame."""
        sx, sy = SUBSAMPLING[self.chroma]
        chroma = (-(-height // sy), -(-width // sx))
        return [(height, width)] + [chroma] * (self.planes - 1)

    def frame_bytes(self, width: int, height: int) -> int:
        return sum(h * w for h, w in self.plane_shapes(width, height)) * self.dtype.itemsize


@dataclass(frozen=True)
class YuvLayout:
    """Everything needed to read a raw file: frame size, format and frame rate."""

    width: int
    height: int
    format: YuvFormat
    fps: float


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> (1920, 1080)."""
    m = re.fullmatch(r"\s*(\d+)[xX](\d+)\s*", text)
    if m is None or not (0 < int(m.group(1)) <= MAX_SIDE and 0 < int(m.group(2)) <= MAX_SIDE):
        raise VideoReadError(f"frame size must be WIDTHxHEIGHT with sides in 1..{MAX_SIDE}, "
                             f"got '{text}'")
    return int(m.group(1)), int(m.group(2))


def name_fields(name: str) -> dict[str, object]:
    """What a raw file's name says: any of ``size`` (w, h), ``fps``, ``chroma``,
    ``bit_depth`` (see the module docstring for the conventions read)."""
    stem = Path(name).name
    stem = stem[:-4] if stem.lower().endswith(".yuv") else stem
    tokens = [t for t in re.split(r"[_\-.\s]+", stem) if t]
    found: dict[str, object] = {}

    def put(key: str, value: object, token: str) -> None:
        if key in found and found[key] != value:
            raise VideoReadError(f"file name '{name}' says two things about the {key}: "
                                 f"{found[key]} and {value} (token '{token}')")
        found[key] = value

    after_size = False
    for token in tokens:
        low = token.lower()
        if re.fullmatch(r"\d+x\d+", low):
            put("size", parse_size(low), token)
            after_size = True
            continue
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)(?:fps|hz|p)", low):
            put("fps", float(m.group(1)), token)
        elif m := re.fullmatch(r"(\d+)(?:bit|bits|b)", low):
            put("bit_depth", int(m.group(1)), token)
        elif low in ("400", "420", "422", "444"):
            put("chroma", low, token)
        elif low in ("i420", "iyuv"):
            put("chroma", "420", token)
            put("bit_depth", 8, token)
        elif _PIX_FMT.match(low):
            fmt = YuvFormat.parse(low)
            put("chroma", fmt.chroma, token)
            put("bit_depth", fmt.bit_depth, token)
        elif after_size and re.fullmatch(r"\d+(?:\.\d+)?", low) and "fps" not in found:
            put("fps", float(low), token)    # Name_1920x1080_50.yuv (HEVC test sequences)
        after_size = False
    return found


def resolve_layout(path: str | os.PathLike, size: str | None = None, pix_fmt: str | None = None,
                   fps: float | None = None) -> YuvLayout:
    """The layout of raw file ``path`` from its name and the options (which fill in what the
    name leaves out; a disagreement is an error naming both)."""
    name = Path(path).name
    fields = name_fields(name)
    given: dict[str, object] = {}
    if size is not None:
        given["size"] = parse_size(size)
    if pix_fmt is not None:
        fmt = YuvFormat.parse(pix_fmt)
        given["chroma"], given["bit_depth"] = fmt.chroma, fmt.bit_depth
    if fps is not None:
        if not 0 < fps <= 1000:
            raise VideoReadError(f"frame rate must be in (0, 1000], got {fps:g}")
        given["fps"] = float(fps)
    option = {"size": "--yuv-size", "chroma": "--yuv-format", "bit_depth": "--yuv-format",
              "fps": "--fps"}
    for key, value in given.items():
        if key in fields and fields[key] != value:
            raise VideoReadError(
                f"'{name}': the file name says {key} {_show(key, fields[key])} but "
                f"{option[key]} says {_show(key, value)}; rename the file or drop the option")
    merged = {**fields, **given}
    if "size" not in merged:
        raise VideoReadError(
            f"'{name}': a raw .yuv file needs its frame size, from its name "
            f"(Name_1920x1080_30fps_420_8bit.yuv) or from the size option (SourceOptions "
            f"size='WIDTHxHEIGHT'; yuv-size on the command line)")
    fmt = YuvFormat(str(merged.get("chroma", DEFAULT_CHROMA)),
                    int(merged.get("bit_depth", DEFAULT_BIT_DEPTH)))  # type: ignore[arg-type]
    w, h = merged["size"]   # type: ignore[misc]
    return YuvLayout(w, h, fmt, float(merged.get("fps", DEFAULT_YUV_FPS)))  # type: ignore[arg-type]


def _show(key: str, value: object) -> str:
    if key == "size":
        return "{}x{}".format(*value)   # type: ignore[str-format]
    return f"{value:g}" if isinstance(value, float) else str(value)


class YuvFile:
    """A raw YUV file opened by memory map; ``frame(i)`` copies one frame's planes.

    The size is checked against the layout when opened: a file that is not a whole number
    of frames (a wrong size or format, or a truncated file) or holds none is refused.
    """

    def __init__(self, path: str | os.PathLike, layout: YuvLayout) -> None:
        self.path = Path(path)
        self.layout = layout
        fmt = layout.format
        self.frame_bytes = fmt.frame_bytes(layout.width, layout.height)
        try:
            total = self.path.stat().st_size
        except OSError as e:
            raise VideoReadError(f"cannot read '{self.path}': {e.strerror or e}") from e
        if total == 0:
            raise VideoReadError(f"'{self.path}' is empty: it holds no frames")
        count, extra = divmod(total, self.frame_bytes)
        if extra:
            raise VideoReadError(
                f"'{self.path}' is {total} bytes, not a whole number of {layout.width}x"
                f"{layout.height} {fmt.pix_fmt} frames of {self.frame_bytes} bytes ({count} "
                f"frames and {extra} bytes more): a wrong size or format, or a truncated file")
        self.count = count
        try:
            self._map = np.memmap(self.path, dtype=fmt.dtype, mode="r")
        except (OSError, ValueError) as e:
            raise VideoReadError(f"cannot map '{self.path}': {e}") from e

    def __len__(self) -> int:
        return self.count

    def frame(self, index: int) -> list[np.ndarray]:
        """Planes of frame ``index`` (copies, the file's sample type), checked to hold no
        sample above the bit depth's peak."""
        if not 0 <= index < self.count:
            raise IndexError(f"frame {index} of {self.count}")
        fmt = self.layout.format
        per_frame = self.frame_bytes // fmt.dtype.itemsize
        pos = index * per_frame
        planes = []
        for h, w in fmt.plane_shapes(self.layout.width, self.layout.height):
            planes.append(np.array(self._map[pos:pos + h * w]).reshape(h, w))
            pos += h * w
        if fmt.bit_depth not in (8, 16) and max(int(p.max()) for p in planes) > fmt.peak:
            raise VideoReadError(
                f"'{self.path}' frame {index} holds samples above {fmt.peak}, the largest "
                f"{fmt.bit_depth}-bit value: not a {fmt.pix_fmt} file")
        return planes


def write_frame(out, planes: list[np.ndarray], fmt: YuvFormat) -> None:
    """Append one frame's planes to a binary stream in the raw layout of ``fmt``."""
    for p in planes:
        out.write(np.ascontiguousarray(p, dtype=fmt.dtype).tobytes())


# --- colour -------------------------------------------------------------------------------

def _normalise(planes: list[np.ndarray], fmt: YuvFormat, rng: str) -> tuple[np.ndarray, ...]:
    """E'y and E'c planes as float64 (luma in [0, 1], chroma centred on 0)."""
    n = fmt.bit_depth
    y = planes[0].astype(np.float64)
    if rng == "full":
        ey = y / fmt.peak
        ec = [(p.astype(np.float64) - (1 << (n - 1))) / fmt.peak for p in planes[1:]]
    else:
        scale = float(1 << (n - 8))
        ey = (y / scale - 16) / 219
        ec = [(p.astype(np.float64) / scale - 128) / 224 for p in planes[1:]]
    return (ey, *ec)


def upsample(plane: np.ndarray, fmt: YuvFormat, height: int, width: int) -> np.ndarray:
    """A chroma plane at full resolution (each sample repeated)."""
    sx, sy = SUBSAMPLING[fmt.chroma]
    return np.repeat(np.repeat(plane, sy, axis=0), sx, axis=1)[:height, :width]


def downsample(plane: np.ndarray, fmt: YuvFormat) -> np.ndarray:
    """A full-resolution chroma plane at the format's resolution (means of the samples each
    chroma sample covers)."""
    sx, sy = SUBSAMPLING[fmt.chroma]
    if sx == sy == 1:
        return plane
    h, w = plane.shape
    ch, cw = -(-h // sy), -(-w // sx)
    total = np.zeros((ch * sy, cw * sx), np.float64)
    count = np.zeros_like(total)
    total[:h, :w] = plane
    count[:h, :w] = 1
    total = total.reshape(ch, sy, cw, sx).sum(axis=(1, 3))
    count = count.reshape(ch, sy, cw, sx).sum(axis=(1, 3))
    return total / count


def yuv_to_rgb(planes: list[np.ndarray], fmt: YuvFormat, matrix: str = DEFAULT_MATRIX,
               rng: str = DEFAULT_RANGE) -> np.ndarray:
    """float64 RGB [H, W, 3] in [0, 1] (clipped) of one frame's planes."""
    kr, kb = MATRICES[matrix]
    ey, *ec = _normalise(planes, fmt, rng)
    if not ec:
        return np.repeat(np.clip(ey, 0, 1)[..., None], 3, axis=2)
    h, w = ey.shape
    cb, cr = (upsample(c, fmt, h, w) for c in ec)
    kg = 1 - kr - kb
    r = ey + 2 * (1 - kr) * cr
    b = ey + 2 * (1 - kb) * cb
    g = (ey - kr * r - kb * b) / kg
    return np.clip(np.stack([r, g, b], axis=-1), 0, 1)


def rgb_to_yuv(rgb: np.ndarray, fmt: YuvFormat, matrix: str = DEFAULT_MATRIX,
               rng: str = DEFAULT_RANGE, quantise: bool = True) -> list[np.ndarray]:
    """Planes of ``fmt`` from RGB [H, W, 3] in [0, 1]: rounded and clipped to the format's
    sample type, or (``quantise=False``) the unrounded float64 sample values."""
    kr, kb = MATRICES[matrix]
    rgb = rgb.astype(np.float64, copy=False)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    ey = kr * r + (1 - kr - kb) * g + kb * b
    n = fmt.bit_depth
    if rng == "full":
        planes = [ey * fmt.peak]
        if fmt.planes == 3:
            cb, cr = (b - ey) / (2 * (1 - kb)), (r - ey) / (2 * (1 - kr))
            planes += [downsample(c, fmt) * fmt.peak + (1 << (n - 1)) for c in (cb, cr)]
    else:
        scale = float(1 << (n - 8))
        planes = [(219 * ey + 16) * scale]
        if fmt.planes == 3:
            cb, cr = (b - ey) / (2 * (1 - kb)), (r - ey) / (2 * (1 - kr))
            planes += [(224 * downsample(c, fmt) + 128) * scale for c in (cb, cr)]
    if not quantise:
        return planes
    return [np.clip(np.rint(p), 0, fmt.peak).astype(fmt.dtype) for p in planes]


@dataclass(frozen=True)
class Crop:
    """A rectangle ``width`` x ``height`` at (``x``, ``y``), parsed from ``WxH+X+Y``."""

    width: int
    height: int
    x: int = 0
    y: int = 0

    @classmethod
    def parse(cls, text: str) -> Crop:
        m = re.fullmatch(r"\s*(\d+)[xX](\d+)(?:\+(\d+)\+(\d+))?\s*", text)
        if m is None or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            raise VideoReadError(f"a crop is WIDTHxHEIGHT+X+Y (e.g. 1920x1024+0+0), got '{text}'")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), int(m.group(4) or 0))

    def __str__(self) -> str:
        return f"{self.width}x{self.height}+{self.x}+{self.y}"

    def check(self, width: int, height: int, source: str, fmt: YuvFormat | None = None) -> None:
        """Refuse a crop that leaves the frame, or that cuts through chroma samples."""
        if self.x + self.width > width or self.y + self.height > height:
            raise VideoReadError(f"crop {self} leaves the {width}x{height} frames of '{source}'")
        if fmt is not None:
            sx, sy = SUBSAMPLING[fmt.chroma]
            if self.x % sx or self.y % sy or self.width % sx or self.height % sy:
                raise VideoReadError(
                    f"crop {self} of the {fmt.pix_fmt} frames of '{source}' must use "
                    f"multiples of {sx} across and {sy} down (whole chroma samples)")

    def planes(self, planes: list[np.ndarray], fmt: YuvFormat) -> list[np.ndarray]:
        """The cropped planes of one frame (views)."""
        sx, sy = SUBSAMPLING[fmt.chroma]
        out = [planes[0][self.y:self.y + self.height, self.x:self.x + self.width]]
        for p in planes[1:]:
            out.append(p[self.y // sy:(self.y + self.height) // sy,
                         self.x // sx:(self.x + self.width) // sx])
        return out

    def rgb(self, frames: np.ndarray) -> np.ndarray:
        """The cropped region of [N, H, W, 3] frames (a view)."""
        return frames[:, self.y:self.y + self.height, self.x:self.x + self.width]
