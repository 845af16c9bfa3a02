"""``dnerv-fast encode / decode / eval``: argparse wiring for the codec.

``register(subparsers)`` adds the three commands; each handler returns the exit status, and
:func:`dnerv_fast.cli.main` turns every failure into one ``error:`` line.
"""
from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dnerv_fast.train.masks import MaskSource

# Spelled out here so that --help never imports torch (see train.distributed, precision).
DEVICE_CHOICES = ["auto", "cpu", "cuda"]
DTYPE_CHOICES = ["fp32", "bf16", "fp16"]


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


def _encode(args: argparse.Namespace) -> int:
    from dnerv_fast.codec.pipeline import encode
    from dnerv_fast.train.distributed import is_main_process
    start = time.perf_counter()
    result = encode(args.videos, args.output, size=args.size, epochs=args.epochs,
                    keyframe_codec=args.keyframe_codec, keyframe_quality=args.keyframe_quality,
                    bits=args.bits, prune=args.prune, batch_size=args.batch_size, lr=args.lr,
                    loss=args.loss, seed=args.seed, max_frames=args.max_frames,
                    resume=args.resume, checkpoint_every=args.checkpoint_every,
                    keep_checkpoint=args.keep_checkpoint, overwrite=args.overwrite, progress=not args.quiet, device=args.device,
                    masks=_masks(args))
    if not is_main_process():
        return 0
    s = result.section_bytes
    print(f"wrote {args.output}: {result.file_bytes} bytes ({s['weights']} weights, "
          f"{s['keyframes']} keyframes), {result.bpp:.5f} bpp over {len(result.videos)} "
          f"video(s) in {time.perf_counter() - start:.1f} s")
    return 0


def _decode(args: argparse.Namespace) -> int:
    from dnerv_fast.codec.pipeline import decode
    for path in decode(args.input, args.output, fmt=args.format, overwrite=args.overwrite,
                       progress=not args.quiet, device=args.device, dtype=args.dtype):
        print(f"wrote {path}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from dnerv_fast.codec.atomic import check_output
    from dnerv_fast.codec.evaluate import DNERV, evaluate
    from dnerv_fast.codec.report import format_table, json_path, write_csv, write_json, write_plot
    outputs = [args.csv, args.plot]
    if args.json:
        anchors = args.anchors if args.crf else []
        outputs += [json_path(args.json, m) for m in (DNERV, *anchors)]
    for out in outputs:
        if out:
            check_output(out, args.overwrite)
    rows = evaluate(args.input, args.videos, crfs=args.crf, anchors=args.anchors,
                    preset=args.preset, progress=not args.quiet, masks=_masks(args))
    print(format_table(rows))
    if args.csv:
        write_csv(rows, args.csv, args.overwrite)
    if args.plot:
        write_plot(rows, args.plot, args.overwrite)
    if args.json:
        for path in write_json(rows, args.json, args.overwrite):
            print(f"wrote {path}")
    return 0


DEFAULT_BOX_SIZE = 32


def _add_mask_options(p: argparse.ArgumentParser, purpose: str) -> None:
    g = p.add_argument_group("inpainting masks", purpose)
    g.add_argument("--mask-boxes", type=int, metavar="COUNT",
                   help="hide COUNT random square boxes in every frame")
    g.add_argument("--mask-box-size", type=int, metavar="PIXELS",
                   help=f"side of each box (default {DEFAULT_BOX_SIZE})")
    g.add_argument("--mask-seed", type=int, metavar="SEED", help="box placement seed (default 0)")
    g.add_argument("--mask-video", nargs="+", metavar="MASK",
                   help="one mask video (file or frame folder) per video, same size and frames; "
                        "pixels of 128 or more are holes")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``encode``, ``decode`` and ``eval`` to a ``dnerv-fast`` subparsers object."""
    p = sub.add_parser("encode", help="train one D-NeRV on videos and write a .dnerv file",
                       description="Encode videos (files or folders of frames) into one .dnerv "
                                   "file: keyframes coded by an image codec, and a network "
                                   "trained on them, quantised and entropy coded.")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("-o", "--output", required=True, help="the .dnerv file to write")
    p.add_argument("--size", default="tiny", help="model configuration (tiny, uvg-XS..XL, ucf101-S..L)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--keyframe-codec", default="webp", help="webp, jpeg, png, hevc or av1")
    p.add_argument("--keyframe-quality", type=int, default=None,
                   help="webp/jpeg: 1-100 (higher is better); hevc/av1: CRF (lower is better)")
    p.add_argument("--bits", type=int, default=8, help="weight bits, 4-8 (2^bits - 1 levels)")
    p.add_argument("--prune", type=float, default=0.0, help="fraction of weights set to zero")
    p.add_argument("--batch-size", type=int, default=8,
                   help="clips per step (in all, over the processes under torchrun)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    p.add_argument("--loss", default="uvg", choices=["uvg", "ucf101"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=None, help="use only the first frames")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="save OUTPUT.ckpt every N epochs (it is removed after success)")
    p.add_argument("--resume", action="store_true", help="continue training from OUTPUT.ckpt")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep OUTPUT.ckpt after success; --resume from a copy of it with other "
                        "--bits/--prune re-quantises without training again")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                   help="where to train (auto: the GPU when there is one; under torchrun, "
                        "each process's GPU cuda:LOCAL_RANK)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _add_mask_options(p, "Inpainting: train without seeing the masked pixels (keyframes are "
                         "coded with the holes filled, the loss ignores them). Box settings "
                         "are stored in the file.")
    p.set_defaults(func=_encode)

    p = sub.add_parser("decode", help="decode every video of a .dnerv file",
                       description="Decode to OUT/NAME.mp4 (lossless RGB x264) or OUT/NAME/ PNGs, "
                                   "at the original frame size.")
    p.add_argument("input", help="a .dnerv file")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--format", default="mp4", choices=["mp4", "png"])
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                   help="where the network runs (auto: a GPU when there is one)")
    p.add_argument("--dtype", default="fp32", choices=DTYPE_CHOICES,
                   help="network precision; bf16/fp16 stay within a few hundredths of a dB of fp32")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_decode)

    p = sub.add_parser("eval", help="rate-distortion of a .dnerv file against x264/x265",
                       description="PSNR, MS-SSIM and bpp per video and overall, for the .dnerv "
                                   "file and for x264/x265 (yuv444p) at the given CRFs.")
    p.add_argument("input", help="a .dnerv file")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="the source videos, in encode order")
    p.add_argument("--crf", type=int, nargs="+", default=[23, 28, 33, 38])
    p.add_argument("--anchors", nargs="*", default=["x264", "x265"], choices=["x264", "x265"])
    p.add_argument("--preset", default="medium", help="x264/x265 preset")
    p.add_argument("--csv", help="write the table as CSV")
    p.add_argument("--plot", help="write a rate-distortion plot (PNG)")
    p.add_argument("--json", metavar="DIR",
                   help="write DIR/dnerv.json, DIR/x264.json, DIR/x265.json: each codec's "
                        "overall points in CompressAI's results format (name, description, "
                        "results: bpp, psnr-rgb, ms-ssim-rgb), for compressai.utils.plot")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    _add_mask_options(p, "Also report PSNR inside the holes and outside them. Without these "
                         "options, the box masks stored in the file are used; a file trained "
                         "with mask videos needs --mask-video again.")
    p.set_defaults(func=_eval)
