"""The header of a .dnerv file, validated completely before anything is built from it.

A .dnerv file may come from anyone. :func:`parse_header` checks every field's type and range
and the totals that follow from them (frames, frame sizes, model widths, keyframe counts)
before the decoder builds a schedule, a model or a frame buffer, so that what decoding
allocates is bounded by what the declared content legitimately needs, and what it may
declare is bounded by the limits below (docs/FORMAT.md lists them). Every violation raises
:class:`BitstreamError` naming the field.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from dnerv_fast.errors import BitstreamError
from dnerv_fast.validation import check_int, check_number, show
from dnerv_fast.media.keyframes import CODECS
from dnerv_fast.codec.memory import largest_feature_map
from dnerv_fast.codec.quantize import MAX_BITS, MIN_BITS
from dnerv_fast.configs import ModelConfig

FORMAT_NAME = "dnerv_fast"
MAX_VIDEOS = 4096
MAX_FRAME_SIDE = 8192
MAX_FRAMES = 1_000_000
MAX_NAME_CHARS = 1024
MAX_FPS = 1000.0
# Decoded frames of one video, padded to whole patches, as uint8 RGB in memory.
MAX_VIDEO_BYTES = 16 << 30
# Model size: 2^28 parameters is 1 GiB in float32, four times the paper's largest model.
MAX_PARAMETERS = 1 << 28
# The largest decoder feature map of one decoding pass (clips_per_pass clips of clip_len
# frames), in elements: 2^31 is 8 GiB in float32, eight times that of uvg-XL.
MAX_FEATURE_ELEMENTS = 1 << 31
MAX_BOXES = 4096
# The fields of each object of the header, as docs/FORMAT.md gives them: name -> (JSON type,
# required). JSON types are exact: an integer is not a float (2.0 is not 2) nor a boolean,
# a number is an integer or a float but not a boolean. A format step adds a row here.
INTEGER, NUMBER, STRING, ARRAY, OBJECT = "integer", "number", "string", "array", "object"
HEADER_FIELDS: dict[str, tuple[str, bool]] = {
    "format": (STRING, True), "version": (INTEGER, True), "config": (OBJECT, True),
    "bits": (INTEGER, True), "prune": (NUMBER, True), "keyframe_codec": (STRING, True),
    "keyframe_quality": (INTEGER, True), "parameters": (INTEGER, True),
    "videos": (ARRAY, True), "inpainting": (OBJECT, False),
}
VIDEO_FIELDS: dict[str, tuple[str, bool]] = {
    "name": (STRING, True), "height": (INTEGER, True), "width": (INTEGER, True),
    "frames": (INTEGER, True), "fps": (NUMBER, True),
}
CONFIG_FIELDS: dict[str, tuple[str, bool]] = {
    "fc_dim": (INTEGER, True), "stem_dim": (INTEGER, True), "strides": (ARRAY, True),
    "patch_size": (ARRAY, True), "clip_len": (INTEGER, True), "expansion": (NUMBER, True),
    "lower_width": (INTEGER, True), "encoder_dim": (INTEGER, True),
    "embed_levels": (INTEGER, True), "embed_base": (NUMBER, True), "mean": (ARRAY, True),
    "std": (ARRAY, True), "name": (STRING, True),
}


def _is(value: Any, kind: str) -> bool:
    if kind == INTEGER:
        return type(value) is int
    if kind == NUMBER:
        return type(value) in (int, float)
    # A tuple is an array too: JSON gives lists, a header built in memory may hold tuples.
    return isinstance(value, {STRING: str, ARRAY: (list, tuple), OBJECT: dict}[kind])


def check_fields(d: dict[str, Any], table: dict[str, tuple[str, bool]], where: str) -> None:
    """Refuse unknown fields, missing required ones and values of another JSON type
    (``where`` prefixes field names in messages: ``"videos[0]."``)."""
    unknown = sorted(set(d) - set(table))
    if unknown:
        scope = f"'{where.rstrip('.')}'" if where else "object"
        raise BitstreamError(f"header {scope} has unknown fields: "
                             f"{', '.join(map(show, unknown[:5]))}")
    for key, (kind, required) in table.items():
        if key not in d:
            if required:
                raise BitstreamError(f"header field '{where}{key}' is missing (required)")
            continue
        if not _is(d[key], kind):
            raise BitstreamError(f"header field '{where}{key}' must be a JSON {kind}, got "
                                 f"{show(d[key])}")


# Version 3: the source's sample depth and chroma format ("rgb" for RGB sources), required;
# for YUV sources also the matrix and range used to convert them, and the 4:2:0 siting tag.
SOURCE_CHROMAS = ("rgb", "400", "420", "422", "444")
SOURCE_BIT_DEPTHS = (8, 10, 12, 16)
SOURCE_MATRICES = ("bt601", "bt709")
SOURCE_RANGES = ("full", "limited")
SOURCE_SITINGS = ("420jpeg", "420mpeg2", "420paldv")
SOURCE_FIELDS: dict[str, tuple[str, bool]] = {
    "bit_depth": (INTEGER, False), "chroma": (STRING, False), "matrix": (STRING, False),
    "range": (STRING, False), "siting": (STRING, False),
}


@dataclass(frozen=True)
class VideoEntry:
    """One video as the header declares it."""

    name: str
    height: int
    width: int
    frames: int
    fps: float
    bit_depth: int = 8           # of the source's samples (version 2: always 8)
    chroma: str = "rgb"          # "rgb", or the YUV source's "400", "420", "422", "444"
    matrix: str | None = None    # YUV sources: "bt601" / "bt709"
    range: str | None = None     # YUV sources: "full" / "limited"
    siting: str | None = None    # 8-bit 4:2:0 sources read from Y4M: its C tag


@dataclass(frozen=True)
class Header:
    """A validated header; ``raw`` is the JSON object it was read from."""

    config: ModelConfig
    bits: int
    prune: float
    keyframe_codec: str
    keyframe_quality: int
    parameters: int
    videos: tuple[VideoEntry, ...]
    raw: dict[str, Any]


def keyframe_count(frames: int, clip_len: int) -> int:
    """``len(keyframe_indices(frames, clip_len))`` without building the schedule: the start
    of every clip, plus the last frame when it starts no clip."""
    return -(-frames // clip_len) + (0 if (frames - 1) % clip_len == 0 else 1)


def _int(d: dict[str, Any], key: str, lo: int, hi: int, where: str = "") -> int:
    return check_int(f"header field '{where}{key}'", d.get(key), lo, hi, BitstreamError)


def _number(d: dict[str, Any], key: str, lo: float, hi: float, where: str = "") -> float:
    """A finite number in (lo, hi]."""
    return check_number(f"header field '{where}{key}'", d.get(key), lo, hi, lo_open=True,
                        error=BitstreamError)


def _only(d: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise BitstreamError(f"header {where} has unknown fields: {', '.join(map(show, unknown[:5]))}")


def _config(raw: Any, clips_per_pass: int) -> ModelConfig:
    if not isinstance(raw, dict):
        raise BitstreamError("header field 'config' must be an object")
    check_fields(raw, CONFIG_FIELDS, "config.")
    try:
        config = ModelConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise BitstreamError(f"header holds an invalid model configuration: {e}") from e
    largest = largest_feature_map(config, clips_per_pass)
    if largest > MAX_FEATURE_ELEMENTS:
        raise BitstreamError(f"header configuration needs decoder feature maps of "
                             f"{largest:,} elements, more than the limit of "
                             f"{MAX_FEATURE_ELEMENTS:,}")
    return config


def _choice(d: dict[str, Any], key: str, allowed: tuple, where: str) -> Any:
    value = d.get(key)
    if isinstance(value, bool) or value not in allowed:
        raise BitstreamError(f"header field '{where}{key}' must be one of "
                             f"{', '.join(map(str, allowed))}, got {show(value)}")
    return value


def _source(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """A version 3 video's source fields (see SOURCE_FIELDS)."""
    out = {"bit_depth": _choice(raw, "bit_depth", SOURCE_BIT_DEPTHS, where),
           "chroma": _choice(raw, "chroma", SOURCE_CHROMAS, where)}
    if out["chroma"] == "rgb":
        if out["bit_depth"] != 8 or set(raw) & {"matrix", "range", "siting"}:
            raise BitstreamError(f"header '{where[:-1]}' is an 8-bit RGB source: bit_depth 8 "
                                 f"and no matrix, range or siting")
        return out
    out["matrix"] = _choice(raw, "matrix", SOURCE_MATRICES, where)
    out["range"] = _choice(raw, "range", SOURCE_RANGES, where)
    if "siting" in raw:
        out["siting"] = _choice(raw, "siting", SOURCE_SITINGS, where)
    return out


def _video(raw: Any, i: int, config: ModelConfig, version: int = 3) -> VideoEntry:
    where = f"videos[{i}]."
    if not isinstance(raw, dict):
        raise BitstreamError(f"header field 'videos[{i}]' must be an object")
    check_fields(raw, {**VIDEO_FIELDS, **(SOURCE_FIELDS if version >= 3 else {})}, where)
    name = raw.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS or "\0" in name:
        raise BitstreamError(f"header field '{where}name' must be a non-empty string of at most "
                             f"{MAX_NAME_CHARS} characters without NUL")
    video = VideoEntry(name, _int(raw, "height", 1, MAX_FRAME_SIDE, where),
                       _int(raw, "width", 1, MAX_FRAME_SIDE, where),
                       _int(raw, "frames", 1, MAX_FRAMES, where),
                       _number(raw, "fps", 0.0, MAX_FPS, where),
                       **(_source(raw, where) if version >= 3 else {}))
    ph, pw = config.patch_size
    padded = (-(-video.height // ph) * ph) * (-(-video.width // pw) * pw) * 3 * video.frames
    if padded > MAX_VIDEO_BYTES:
        raise BitstreamError(f"header declares video {i} as {video.frames} frames of "
                             f"{video.width}x{video.height}: {padded / 2**30:.1f} GiB decoded, "
                             f"more than the limit of {MAX_VIDEO_BYTES / 2**30:.0f} GiB")
    return video


def _inpainting(raw: Any) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict) or raw.get("kind") not in ("boxes", "video"):
        raise BitstreamError("header field 'inpainting' must be an object with kind "
                             "'boxes' or 'video'")
    if raw["kind"] == "video":
        _only(raw, {"kind"}, "'inpainting'")
        return
    _only(raw, {"kind", "count", "size", "seed"}, "'inpainting'")
    _int(raw, "count", 1, MAX_BOXES, "inpainting.")
    _int(raw, "size", 1, MAX_FRAME_SIDE, "inpainting.")
    _int(raw, "seed", 0, 2**63 - 1, "inpainting.")


def parse_header(raw: dict[str, Any], *, version: int, keyframes: int,
                 clips_per_pass: int) -> Header:
    """Validate a header read from a container of format ``version`` that stores
    ``keyframes`` keyframes, for a decoder that runs ``clips_per_pass`` clips at a time;
    raise :class:`BitstreamError` for the first bad field."""
    check_fields(raw, HEADER_FIELDS, "")
    if raw.get("format") != FORMAT_NAME:
        raise BitstreamError(f"header field 'format' must be {FORMAT_NAME!r}, "
                             f"got {show(raw.get('format'))}")
    if raw.get("version") != version or isinstance(raw.get("version"), bool):
        raise BitstreamError(f"header field 'version' ({show(raw.get('version'))}) does not match "
                             f"the container's format version {version}")
    bits = _int(raw, "bits", MIN_BITS, MAX_BITS)
    prune = raw.get("prune")
    if isinstance(prune, bool) or not isinstance(prune, numbers.Real) or not 0 <= prune < 1:
        raise BitstreamError(f"header field 'prune' must be a number in [0, 1), got {show(prune)}")
    codec = CODECS.get(raw.get("keyframe_codec")) if isinstance(raw.get("keyframe_codec"), str) else None
    if codec is None:
        raise BitstreamError(f"header field 'keyframe_codec' must be one of {', '.join(CODECS)}, "
                             f"got {show(raw.get('keyframe_codec'))}")
    quality = _int(raw, "keyframe_quality", *codec.quality_range)
    config = _config(raw.get("config"), clips_per_pass)
    parameters = _int(raw, "parameters", 1, MAX_PARAMETERS)
    videos = raw.get("videos")
    if not isinstance(videos, list) or not 0 < len(videos) <= MAX_VIDEOS:
        raise BitstreamError(f"header field 'videos' must be a list of 1..{MAX_VIDEOS} videos")
    entries = tuple(_video(v, i, config, version) for i, v in enumerate(videos))
    needed = sum(keyframe_count(v.frames, config.clip_len) for v in entries)
    if needed != keyframes:
        raise BitstreamError(f"header's videos need {needed} keyframes, the file holds {keyframes}")
    _inpainting(raw.get("inpainting"))
    return Header(config, bits, float(prune), codec.name, quality, parameters, entries, raw)
