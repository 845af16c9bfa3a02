"""Options named in messages, spelled for whoever reads them.

Errors and warnings raised by the library reach Python callers as they are, so they name
options as the Python API spells them: ``overwrite=True``, ``lr=``, ``device='cuda'``. The
command line rewrites those spellings into its flags (``--overwrite``, ``--lr``,
``--device cuda``) before printing a message, with :func:`as_flags`: one vocabulary in the
library, one translation at the edge.
"""
from __future__ import annotations

import re

# Keyword arguments of the API functions whose command-line flag is "--" + the name with
# dashes (encode, decode, evaluate, profile).
API_OPTIONS = (
    "overwrite", "resume", "checkpoint_every", "keep_checkpoint", "max_frames", "epochs",
    "lr", "warmup", "recipe", "batch_size", "bits", "prune", "qat", "size", "target_bpp",
    "keyframe_codec", "keyframe_quality", "device", "dtype", "precision", "mask_video",
    "mask_boxes", "mask_box_size", "mask_seed", "seed", "loss", "compile", "cuda_graphs",
    "data",
)
_VALUE = r"(?:'([^']*)'|\"([^\"]*)\"|(True)\b|([^\s,;:)\]]+))?"
_PATTERN = re.compile(r"(?<![\w.-])(" + "|".join(sorted(API_OPTIONS, key=len, reverse=True))
                      + r")=" + _VALUE)


def as_flags(message: str) -> str:
    """``message`` with every ``name=value`` of an API option spelt as its flag:
    ``overwrite=True`` -> ``--overwrite``, ``device='cuda'`` -> ``--device cuda``,
    ``checkpoint_every=N`` -> ``--checkpoint-every N``, a bare ``lr=`` -> ``--lr``."""
    def flag(m: re.Match) -> str:
        name = "--" + m.group(1).replace("_", "-")
        value = next((g for g in m.groups()[1:] if g is not None), None)
        return name if value in (None, "True") else f"{name} {value}"
    return _PATTERN.sub(flag, message)
