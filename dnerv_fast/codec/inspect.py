"""``dnerv-fast info``: what a .dnerv file holds, read without decoding a frame (the weights'
rANS stream is decoded only for the per-tensor table), and the table of named model
configurations."""
from __future__ import annotations

import os

from dnerv_fast.codec.bitstream import bits_per_pixel, read_container, section_sizes
from dnerv_fast.codec.header import VideoEntry, parse_header
from dnerv_fast.codec.memory import check_decode_memory, decode_memory
from dnerv_fast.media.yuv import YuvFormat
from dnerv_fast.codec.render import RENDER_CHUNK
from dnerv_fast.codec.weight_report import WeightsSummary, tensor_bits, tensor_table
from dnerv_fast.codec.weights import decode_layout, model_shapes, read_layout
from dnerv_fast.options import keyframe_setting
from dnerv_fast.printable import printable


def _source(v: VideoEntry) -> str:
    """A video's source format: ``rgb 8-bit``, or ``yuv420p10le bt709 full``."""
    if v.chroma == "rgb":
        return "rgb 8-bit"
    fmt = YuvFormat(v.chroma, v.bit_depth).pix_fmt
    return f"{fmt} {v.matrix} {v.range}" + (f" {v.siting}" if v.siting else "")


def describe_file(path: str | os.PathLike, tensors: bool = False,
                  max_memory: int | str | None = None) -> str:
    """A few lines on a validated .dnerv file: version, model, videos, bytes and bpp, bits
    per parameter of the weights, and with ``tensors`` those of every tensor (the memory
    that needs is checked against ``max_memory``, :mod:`.memory`)."""
    container = read_container(path)
    head = parse_header(container.header, version=container.version,
                        keyframes=len(container.keyframes), clips_per_pass=RENDER_CHUNK)
    sizes = section_sizes(container)
    total = sum(sizes.values())   # the bytes read: the file may change after reading
    check_decode_memory(decode_memory(head, total, RENDER_CHUNK, weights=tensors, frames=0),
                        max_memory, f"'{printable(path)}'")
    pixels = sum(v.height * v.width * v.frames for v in head.videos)
    c = head.config
    layout = read_layout(container.weights, model_shapes(c, head.parameters), head.bits)
    lines = [
        f"{printable(path)}: .dnerv format version {container.version}, {total} bytes, "
        f"{bits_per_pixel(total, pixels):.5f} bpp over {pixels} pixels",
        f"model: {printable(c.name)}, fc_dim {c.fc_dim}, patch {c.patch_size[0]}x{c.patch_size[1]}, "
        f"clips of {c.clip_len}, strides {list(c.strides)}, {head.parameters} parameters at "
        f"{head.bits} bits" + (f", {head.prune:.0%} pruned" if head.prune else ""),
        f"keyframes: {len(container.keyframes)} x "
        f"{keyframe_setting(head.keyframe_codec, head.keyframe_quality)}",
        "sections: " + ", ".join(f"{name} {n} B ({n / total:.1%})" for name, n in sizes.items()),
        WeightsSummary.of(layout).line(),
        f"{'video':<24} {'size':>11} {'frames':>7} {'fps':>7}  source",
    ]
    lines += [f"{printable(v.name[:24]):<24} {f'{v.width}x{v.height}':>11} {v.frames:>7} "
              f"{v.fps:>7.3f}  {_source(v)}" for v in head.videos]
    if "inpainting" in container.header:
        lines.append(f"inpainting: {printable(container.header['inpainting'])}")
    if tensors:
        lines.append(tensor_table(tensor_bits(layout, decode_layout(container.weights, layout))))
    return "\n".join(lines)


def configurations_table() -> str:
    """Every named configuration with its parameter count and the paper's."""
    import torch

    from dnerv_fast.configs import CONFIGS, PUBLISHED_PARAMS_M
    from dnerv_fast.model import DNeRV
    lines = [f"{'name':<10} {'fc_dim':>6} {'patch':>9} {'params (M)':>11} {'paper (M)':>10}  widths"]
    for name, config in CONFIGS.items():
        with torch.device("meta"):
            params = sum(p.numel() for p in DNeRV(config).parameters()) / 1e6
        paper = PUBLISHED_PARAMS_M.get(name)
        patch = "x".join(map(str, config.patch_size))
        lines.append(f"{name:<10} {config.fc_dim:>6} {patch:>9} {params:>11.3f} "
                     f"{paper or '-':>10}  {config.stage_widths()}")
    return "\n".join(lines)
