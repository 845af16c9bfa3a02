"""``dnerv-fast encode / decode / eval / info``: the codec's commands.

Each command has a function that adds its arguments and one that runs it; both are
registered in :data:`dnerv_fast.cli.COMMANDS`, and :func:`dnerv_fast.cli.main` turns every
failure into one ``error:`` line. Nothing here imports torch until a command runs.
"""
from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dnerv_fast.train.masks import MaskSource

# Spelled out here so that --help never imports torch (see precision.parse_dtype).
DTYPE_CHOICES = ["fp32", "bf16", "fp16"]
# codec.anchors.PIX_FMTS (tests/test_eval_command.py checks), without importing PyAV for --help.
ANCHOR_PIX_FMTS = ["yuv444p", "yuv420p"]
# media.keyframes.CODECS, the first its DEFAULT_CODEC (the same test checks), likewise.
KEYFRAME_CODECS = ["av1", "hevc", "webp", "jpeg", "png"]
DEFAULT_BOX_SIZE = 32


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


def run_encode(args: argparse.Namespace) -> int:
    from dnerv_fast.codec.pipeline import encode
    from dnerv_fast.train.distributed import is_main_process
    start = time.perf_counter()
    result = encode(args.videos, args.output, size=args.size, epochs=args.epochs,
                    keyframe_codec=args.keyframe_codec, keyframe_quality=args.keyframe_quality,
                    bits=args.bits, prune=args.prune, batch_size=args.batch_size, lr=args.lr,
                    loss=args.loss, seed=args.seed, max_frames=args.max_frames,
                    resume=args.resume, checkpoint_every=args.checkpoint_every,
                    keep_checkpoint=args.keep_checkpoint, overwrite=args.overwrite,
                    progress=not args.quiet, device=args.device, masks=_masks(args),
                    target_bpp=args.target_bpp, qat=args.qat,
                    precision=args.precision, compile=args.compile, measure=True)
    if not is_main_process():
        return 0
    s = result.section_bytes
    print(f"wrote {args.output}: {result.file_bytes} bytes ({s['weights']} weights, "
          f"{s['keyframes']} keyframes), {result.bpp:.5f} bpp over {len(result.videos)} "
          f"video(s) in {time.perf_counter() - start:.1f} s")
    if result.rate_plan is not None:
        print(f"target {args.target_bpp:g} bpp: got {result.bpp:.4f} bpp "
              f"({result.bpp / args.target_bpp - 1:+.1%})")
    if result.truth is not None:
        print("\n".join(result.truth.lines()))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from dnerv_fast.codec.pipeline import decode
    for path in decode(args.input, args.output, fmt=args.format, overwrite=args.overwrite,
                       progress=not args.quiet, device=args.device, dtype=args.dtype):
        print(f"wrote {path}")
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
        check_json_outputs(args.json, [DNERV, *(args.anchors if args.crf else [])], args.overwrite)
    rows = evaluate(args.input, args.videos, crfs=args.crf, anchors=args.anchors,
                    preset=args.preset, progress=not args.quiet, masks=_masks(args),
                    pix_fmts=args.pix_fmt)
    print(format_table(rows))
    if args.csv:
        write_csv(rows, args.csv, args.overwrite)
    if args.plot:
        write_plot(rows, args.plot, args.overwrite)
    if args.json:
        for path in write_json(rows, args.json, args.overwrite):
            print(f"wrote {path}")
    return 0


def _add_mask_options(p: argparse.ArgumentParser, purpose: str) -> None:
    g = p.add_argument_group("inpainting masks", purpose)
    g.add_argument("--mask-boxes", type=int, metavar="COUNT",
                   help="hide COUNT random square boxes in every frame")
    g.add_argument("--mask-box-size", type=int, metavar="PIXELS",
                   help=f"side of each box (default {DEFAULT_BOX_SIZE} with --mask-boxes)")
    g.add_argument("--mask-seed", type=int, metavar="SEED", help="box placement seed (default 0)")
    g.add_argument("--mask-video", nargs="+", metavar="MASK",
                   help="one mask video (file or frame folder) per video, same size and frames; "
                        "pixels of 128 or more are holes")


def encode_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Encode videos (files or folders of frames) into one .dnerv file: keyframes "
                     "coded by an image codec, and a network trained on them, quantised and "
                     "entropy coded.")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of frames")
    p.add_argument("-o", "--output", required=True, help="the .dnerv file to write")
    p.add_argument("--size", default="tiny",
                   help="model configuration: tiny, uvg-XS..XL, ucf101-S..L (dnerv-fast info)")
    p.add_argument("--target-bpp", type=float, default=None, metavar="BPP",
                   help="make the file this many bits per pixel, every byte counted: scales "
                        "the widths of --size and picks the keyframe quality (unless "
                        "--keyframe-quality is given); prints what it chose and why")
    p.add_argument("--epochs", type=int, default=100, help="passes over every clip")
    p.add_argument("--keyframe-codec", default="av1", choices=KEYFRAME_CODECS,
                   help="intra codec of the keyframes (av1: the fewest bytes at equal PSNR, see README)")
    p.add_argument("--keyframe-quality", type=int, default=None,
                   help="webp/jpeg: 1-100 (higher is better; default 85/90); hevc/av1: CRF "
                        "(lower is better; default 28/35); png: lossless")
    p.add_argument("--bits", type=int, default=8, help="weight bits, 4-8 (2^bits - 1 levels)")
    p.add_argument("--qat", type=float, default=0.2, metavar="SHARE",
                   help="share of --epochs spent last training through the --bits quantiser "
                        "(quantisation-aware training, straight-through estimator); 0: off")
    p.add_argument("--prune", type=float, default=0.0,
                   help="fraction of weights set to zero (smallest magnitudes, biases kept), "
                   "cut before the --qat epochs, which fine-tune the rest")
    p.add_argument("--batch-size", type=int, default=8,
                   help="clips per step (in all, over the processes under torchrun)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate, in (0, 1]")
    p.add_argument("--loss", default="uvg", choices=["uvg", "ucf101"],
                   help="the paper's loss for that data set (SPEC: 0.7 L1 + 0.3 (1-SSIM) for uvg)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and clip order")
    p.add_argument("--max-frames", type=int, default=None,
                   help="use only the first frames of each video (default: all)")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="save OUTPUT.ckpt every N epochs, 0: only at the end (it is removed after "
                        "success)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="type training computes in; weights and optimiser stay fp32 (bf16 on "
                        "recent GPUs; fp16 scales the loss)")
    p.add_argument("--compile", action="store_true",
                   help="train the network under torch.compile (first steps slower)")
    p.add_argument("--resume", action="store_true", help="continue training from OUTPUT.ckpt")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep OUTPUT.ckpt after success; --resume from a copy of it with other "
                        "--bits/--prune re-quantises without training again")
    _add_mask_options(p, "Inpainting: train without seeing the masked pixels (keyframes are "
                         "coded with the holes filled, the loss ignores them). Box settings "
                         "are stored in the file.")


def decode_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Decode to OUT/NAME.mp4 (lossless RGB x264) or OUT/NAME/ PNGs, at the "
                     "original frame size. Names stored in the file become safe file names.")
    p.add_argument("input", help="a .dnerv file")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--format", default="mp4", choices=["mp4", "png"], help="output of each video")
    p.add_argument("--dtype", default="fp32", choices=DTYPE_CHOICES,
                   help="network precision; bf16/fp16 stay within a few hundredths of a dB of fp32")


def eval_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("PSNR, MS-SSIM and bpp per video and overall, for the .dnerv file and for "
                     "x264/x265 at the given CRFs (yuv444p; yuv420p too with --pix-fmt).")
    p.add_argument("input", help="a .dnerv file")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="the source videos, in encode order")
    p.add_argument("--crf", type=int, nargs="+", default=[23, 28, 33, 38],
                   help="x264/x265 CRFs of the anchor points")
    p.add_argument("--anchors", nargs="*", default=["x264", "x265"], choices=["x264", "x265"],
                   help="classical codecs to compare with")
    p.add_argument("--preset", default="medium", help="x264/x265 preset")
    p.add_argument("--pix-fmt", nargs="+", default=["yuv444p"], choices=ANCHOR_PIX_FMTS,
                   help="anchor pixel formats; yuv420p points are named x264-420, x265-420 "
                        "(RGB -> yuv420p -> RGB alone stops near 45 dB)")
    p.add_argument("--csv", help="write the table as CSV")
    p.add_argument("--plot", help="write a rate-distortion plot (PNG)")
    p.add_argument("--json", metavar="DIR",
                   help="write DIR/dnerv.json, DIR/x264.json, DIR/x265.json: each codec's "
                        "overall points in CompressAI's results format (name, description, "
                        "results: bpp, psnr-rgb, ms-ssim-rgb), for compressai.utils.plot")
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


def run_info(args: argparse.Namespace) -> int:
    from dnerv_fast.codec.inspect import configurations_table, describe_file
    print(describe_file(args.file, args.tensors) if args.file else configurations_table())
    return 0
