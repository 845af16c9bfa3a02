"""Options named in messages, spelled for whoever reads them.

Errors and warnings raised by the library reach Python callers as they are, so they name
options as the Python API spells them: ``overwrite=True``, ``lr=``, ``device='cuda'``. The
command line rewrites those spellings into its flags (``--overwrite``, ``--lr``,
``--device cuda``) before printing a message, with :func:`as_flags`: one vocabulary in the
library, one translation at the edge.
"""
from __future__ import annotations

import re

# Options outside dnerv_fast.options' settings classes: the profile command's, decode's.
_OTHER_FLAGS = {"cuda_graphs": "--cuda-graphs", "max_memory": "--max-memory", "videos": "--video"}


def _flags() -> dict[str, str]:
    """Every API option name and its flag (dnerv_fast.options defines both)."""
    from dnerv_fast.options import iter_settings, options
    flags = dict(_OTHER_FLAGS)
    for settings in iter_settings():
        flags.update((o.name, o.flag) for o in options(settings) if o.flag)
    return flags


FLAGS = _flags()
_VALUE = r"(?:'([^']*)'|\"([^\"]*)\"|(True)\b|([^\s,;:)\]]+))?"
_PATTERN = re.compile(r"(?<![\w.-])(" + "|".join(sorted(FLAGS, key=len, reverse=True))
                      + r")=" + _VALUE)


def as_flags(message: str) -> str:
    """``message`` with every ``name=value`` of an API option spelt as its flag:
    ``overwrite=True`` -> ``--overwrite``, ``device='cuda'`` -> ``--device cuda``,
    ``checkpoint_every=N`` -> ``--checkpoint-every N``, a bare ``lr=`` -> ``--lr``."""
    def flag(m: re.Match) -> str:
        name = FLAGS[m.group(1)]
        value = next((g for g in m.groups()[1:] if g is not None), None)
        return name if value in (None, "True") else f"{name} {value}"
    return _PATTERN.sub(flag, message)
