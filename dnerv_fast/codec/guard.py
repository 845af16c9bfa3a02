"""A check that a written .dnerv file is worth having, run after every encode.

A run with too few steps, too small a rate or a learning rate far from what its budget
needs still writes a valid file; it just decodes to a flat field. This check compares the
file's PSNR (after quantisation, on the real frames) with what x264 gives at its coarsest
setting (CRF 51, preset medium, yuv444p) on the same frames and with :data:`FLOOR_DB`, and
its size with the raw RGB frames, and warns (:class:`OutputQualityWarning`) with the likely
cause and the fix. It trains nothing again: it decodes the network once (skipped when the
encode already measured the file) and codes the frames once with x264.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dnerv_fast.codec.anchors import encode_anchor
from dnerv_fast.codec.summary import EncodeSummary, mean_psnr
from dnerv_fast.errors import CodecError
from dnerv_fast.train.recipe import PAPER_STEPS, Recipe

# Below this RGB PSNR a decoded video is hardly recognisable, whatever x264 manages.
FLOOR_DB = 20.0
COARSEST_CRF = 51


class OutputQualityWarning(UserWarning):
    """The written file is of little use: worse than x264's coarsest setting, below
    :data:`FLOOR_DB`, or larger than the raw frames."""


@dataclass(frozen=True)
class Verdict:
    """What the check measured, and the warnings it gave (empty: the file is fine)."""

    psnr: float
    x264_psnr: float | None        # x264 at CRF 51 on the same frames (None: it failed)
    file_bytes: int
    raw_bytes: int
    warnings: tuple[str, ...]


def _x264_coarsest(reference: Sequence[np.ndarray], fps: Sequence[float],
                   truth: EncodeSummary | None) -> float | None:
    """PSNR of x264 at CRF 51, taken from the measurement when it holds that point."""
    if truth is not None:
        for point in truth.anchors:
            if point.crf == COARSEST_CRF:
                return point.psnr
        if truth.anchors:        # the bracket lies above CRF 51, so the file beats it
            return float("-inf")
    try:
        decoded = [encode_anchor(f, "x264", COARSEST_CRF, fps=r).frames
                   for f, r in zip(reference, fps)]
    except CodecError:
        return None
    return mean_psnr(decoded, reference)


def _advice(recipe: Recipe | None, epochs: int) -> str:
    """The likely cause of a poor file, and what to change."""
    if recipe is not None and recipe.name == "paper" and recipe.steps < PAPER_STEPS / 10:
        cause = (f"recipe='paper' is tuned for about {PAPER_STEPS:,} optimiser steps and this run "
                 f"made {recipe.steps:,}: use the default recipe, or many more epochs=")
    else:
        steps = f" ({recipe.steps:,} steps at peak lr {recipe.lr:.3g})" if recipe else ""
        cause = (f"the network learned too little in {epochs} epochs{steps}: train more "
                 f"epochs=, give it a higher rate (target_bpp= or a larger size=), or try "
                 f"another lr=")
    return cause


def check_output(decoded: Sequence[np.ndarray] | None, reference: Sequence[np.ndarray],
                 fps: Sequence[float], file_bytes: int, *, epochs: int,
                 recipe: Recipe | None = None, summary: EncodeSummary | None = None
                 ) -> Verdict:
    """Judge a written file whose videos decode to ``decoded`` (None: take the PSNR from
    ``summary``, the encode's measurement) against the real frames ``reference``."""
    truth = summary
    psnr = truth.psnr if truth is not None else mean_psnr(decoded or [], reference)
    raw = sum(int(r.size) for r in reference)
    x264 = _x264_coarsest(reference, fps, truth)
    found = []
    if x264 is not None and psnr < x264:
        found.append(f"the file decodes at {psnr:.2f} dB, below x264 at its coarsest "
                     f"(CRF {COARSEST_CRF}: {x264:.2f} dB on the same frames); "
                     + _advice(recipe, epochs))
    elif psnr < FLOOR_DB:
        found.append(f"the file decodes at {psnr:.2f} dB, below the {FLOOR_DB:g} dB floor of "
                     f"a usable video; " + _advice(recipe, epochs))
    if file_bytes > raw:
        found.append(f"the file takes {file_bytes:,} bytes, more than the raw RGB frames "
                     f"({raw:,} bytes): use a smaller size= or a target_bpp=")
    return Verdict(psnr, None if x264 in (None, float("-inf")) else x264, file_bytes, raw,
                   tuple(found))


def warn_if_useless(verdict: Verdict) -> None:
    """One :class:`OutputQualityWarning` per problem found."""
    for message in verdict.warnings:
        warnings.warn(message, OutputQualityWarning, stacklevel=3)
