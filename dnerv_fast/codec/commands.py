"""``dnerv-fast encode / decode / eval / info``: the codec's commands.

Each command has a function that adds its arguments and one that runs it; both are
registered in :data:`dnerv_fast.cli.COMMANDS`, and :func:`dnerv_fast.cli.main` turns every
failure into one ``error:`` line. Nothing here imports torch until a command runs.
"""
from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from dnerv_fast import options
from dnerv_fast.options import (DecodeSettings, EncodeSettings, EvalSettings, MaskSettings,
                                add_options, from_args)

if TYPE_CHECKING:
    from dnerv_fast.train.masks import MaskSource

# Re-exported for the tests that compare them with the modules they mirror.
ANCHOR_PIX_FMTS = list(options.ANCHOR_PIX_FMTS)
KEYFRAME_CODECS = list(options.KEYFRAME_CODECS)
DEFAULT_BOX_SIZE = options.DEFAULT_BOX_SIZE


def _masks(args: argparse.Namespace) -> MaskSource | None:
    """The mask options as a mask source (None when none is given)."""
    from dnerv_fast.train.masks import BoxMasks, MaskError, VideoMasks
    if args.mask_video and args.mask_boxes is not None:
        raise MaskError("give either --mask-boxes or --mask-video, not both")
    if args.mask_boxes is None and (args.mask_box_size is not None or args.mask_seed is not None):
        raise MaskError("--mask-box-size and --mask-seed need --mask-boxes")
    if args.mask_video:
        return VideoMasks(tuple(args.mask_video))
    if args.mask_boxes is None:
        return None
    size = DEFAULT_BOX_SIZE if args.mask_box_size is None else args.mask_box_size
    return BoxMasks(args.mask_boxes, size, args.mask_seed or 0)


def _source(args: argparse.Namespace):
    """The source reading options (raw YUV layout, matrix, range, crop) as SourceOptions."""
    from dnerv_fast.media.planar import SourceOptions
    return SourceOptions(size=args.yuv_size, pix_fmt=args.yuv_format, fps=args.fps,
                         matrix=args.yuv_matrix, range=args.yuv_range, crop=args.crop)


def run_encode(args: argparse.Namespace) -> int:
    from dnerv_fast.codec.pipeline import encode
    from dnerv_fast.train.distributed import is_main_process
    start = time.perf_counter()
    result = encode(args.videos, args.output, from_args(EncodeSettings, args),
                    overwrite=args.overwrite, progress=not args.quiet, device=args.device,
                    masks=_masks(args), measure=True, source=_source(args))
    if not is_main_process():
        return 0
    s = result.section_bytes
    print(f"wrote {args.output}: {result.file_bytes} bytes ({s['weights']} weights, "
          f"{s['keyframes']} keyframes), {result.bpp:.5f} bpp over {len(result.videos)} "
          f"video(s) in {time.perf_counter() - start:.1f} s")
    if result.rate_plan is not None:
        print(f"target {args.target_bpp:g} bpp: got {result.bpp:.4f} bpp "
              f"({result.bpp / args.target_bpp - 1:+.1%})")
    if result.summary is not None:
        print("\n".join(result.summary.lines()))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from dnerv_fast.codec.pipeline import decode
    from dnerv_fast.printable import printable
    for path in decode(args.input, args.output, fmt=args.fmt, overwrite=args.overwrite,
                       progress=not args.quiet, device=args.device, dtype=args.dtype,
                       videos=args.video, frames=args.frames, max_memory=args.max_memory):
        print(f"wrote {printable(path)}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from dnerv_fast.atomic import check_file_output
    from dnerv_fast.codec.evaluate import DNERV, evaluate
    from dnerv_fast.codec.report import (check_json_outputs, format_table, write_csv, write_json,
                                         write_plot)
    for out in (args.csv, args.plot):
        if out:
            check_file_output(out, args.overwrite)
    if args.json:
        check_json_outputs(args.json, [DNERV, *(args.anchors if args.crfs else [])], args.overwrite)
    rows = evaluate(args.input, args.videos, crfs=args.crfs, anchors=args.anchors,
                    preset=args.preset, progress=not args.quiet, masks=_masks(args),
                    pix_fmts=args.pix_fmts, source=_source(args), max_memory=args.max_memory)
    print(format_table(rows))
    # The file may hold fewer frames than a source (encode --max-frames): say what was compared.
    per_video = [r for r in rows if r.method == DNERV and r.video != "ALL"]
    for source, row in zip(args.videos, per_video):
        print(f"compared frames 1-{row.frames} of {source} with the file's '{row.video}'")
    if args.csv:
        write_csv(rows, args.csv, args.overwrite)
        print(f"wrote {args.csv}")
    if args.plot:
        write_plot(rows, args.plot, args.overwrite)
        print(f"wrote {args.plot}")
    if args.json:
        for path in write_json(rows, args.json, args.overwrite):
            print(f"wrote {path}")
    return 0


def _add_source_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "sources", "Raw .yuv files take their size, frame rate, chroma format and bit depth "
        "from their names (Beauty_1920x1080_120fps_420_8bit_YUV.yuv) or from these options, "
        "which fill in what the name leaves out; a disagreement is an error. .y4m files say "
        "their own.")
    g.add_argument("--yuv-size", metavar="WxH", help="frame size of raw .yuv files")
    g.add_argument("--yuv-format", metavar="PIX_FMT",
                   help="planar layout of raw .yuv files: yuv420p, yuv422p10le, yuv444p16le, "
                        "gray10le... (default yuv420p)")
    g.add_argument("--fps", type=float, help="frame rate of raw .yuv files (default 25)")
    g.add_argument("--yuv-matrix", default="bt709", choices=["bt601", "bt709"],
                   help="YUV <-> RGB matrix of YUV sources (the network works in RGB)")
    g.add_argument("--yuv-range", choices=["full", "limited"],
                   help="YUV sample range of raw .yuv files (default full; Y4M: its "
                        "XCOLORRANGE tag)")
    g.add_argument("--crop", metavar="WxH+X+Y",
                   help="crop every video before tiling (the paper's UVG protocol: "
                        "1920x1024+0+0, the upper 1024 rows)")


def _add_mask_options(p: argparse.ArgumentParser, purpose: str) -> None:
    add_options(p.add_argument_group("inpainting masks", purpose), MaskSettings)


def encode_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Encode videos (files or folders of frames) into one .dnerv file: keyframes "
                     "coded by an image codec, and a network trained on them, quantised and "
                     "entropy coded.")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of frames")
    p.add_argument("-o", "--output", required=True, help="the .dnerv file to write")
    add_options(p, EncodeSettings)
    _add_source_options(p)
    _add_mask_options(p, "Inpainting: train without seeing the masked pixels (keyframes are "
                         "coded with the holes filled, the loss ignores them). Box settings "
                         "are stored in the file.")


def _add_memory_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-memory", metavar="SIZE", default=None,
                   help="memory a file may need to be read, such as 12G (default: 75 percent of the "
                        "available memory); a file needing more is refused before decoding")


def decode_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Decode to OUT/NAME.mp4 (lossless RGB x264), OUT/NAME.yuv or .y4m (the "
                     "source's YUV layout and bit depth) or OUT/NAME/ PNGs, at the original "
                     "frame size, clip group by clip group (memory does not grow with the "
                     "video). Names stored in the file become safe file names.")
    p.add_argument("input", help="a .dnerv file")
    p.add_argument("-o", "--output", required=True,
                   help="output folder; or one file (.mp4, .yuv, .y4m: the format by "
                        "extension); or - for Y4M on standard output (| ffmpeg -i - ...)")
    add_options(p, DecodeSettings)
    p.add_argument("--video", action="append", metavar="NAME",
                   help="decode only this video (repeat for several); a single-file output "
                        "needs one when the file holds several")
    p.add_argument("--frames", metavar="A:B",
                   help="decode only frames A..B-1 (Python slice; only the clips covering "
                        "them run; bit-identical to the same frames of a whole decode)")
    _add_memory_option(p)


def eval_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("PSNR, MS-SSIM and bpp per video and overall, for the .dnerv file and for "
                     "x264/x265 at the given CRFs (yuv444p; yuv420p too with --pix-fmt).")
    p.add_argument("input", help="a .dnerv file")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="the source videos, in encode order")
    add_options(p, EvalSettings)
    _add_source_options(p)
    p.add_argument("--csv", help="write the table as CSV")
    p.add_argument("--plot", help="write a rate-distortion plot (PNG)")
    p.add_argument("--json", metavar="DIR",
                   help="write DIR/dnerv.json, DIR/x264.json, DIR/x265.json: each codec's "
                        "overall points in CompressAI's results format (name, description, "
                        "results: bpp, psnr-rgb, ms-ssim-rgb), for compressai.utils.plot")
    _add_memory_option(p)
    _add_mask_options(p, "Also report PSNR inside the holes and outside them. Without these "
                         "options, the box masks stored in the file are used; a file trained "
                         "with mask videos needs --mask-video again.")


def info_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("With FILE: its format version, configuration, videos (size, frames, fps), "
                     "bytes per section, bits per pixel and the weights' bits per parameter, "
                     "read without decoding a frame. Without: every named model configuration "
                     "and its parameter count.")
    p.add_argument("file", nargs="?", help="a .dnerv file")
    p.add_argument("--tensors", action="store_true",
                   help="with FILE: also every weight tensor's storage mode, bytes and bits "
                        "per parameter (decodes the weights)")
    _add_memory_option(p)


def run_info(args: argparse.Namespace) -> int:
    from dnerv_fast.codec.inspect import configurations_table, describe_file
    print(describe_file(args.file, args.tensors, max_memory=args.max_memory) if args.file
          else configurations_table())
    return 0
