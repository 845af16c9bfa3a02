"""Video names as safe output file names.

A .dnerv file stores a name for each video, and ``decode`` writes ``OUT/NAME.mp4`` or the
folder ``OUT/NAME/``. The file may come from anyone, so a stored name is never used as a path:
it is mapped to one plain file name that cannot leave ``OUT`` or clash with another output.

The mapping (also applied at encode time, so that files made here store safe names):

- characters that are path separators, control characters (NUL included), bidirectional
  controls (a name shown in another order than stored), lone surrogates (valid in JSON, not
  encodable in UTF-8) or not allowed in Windows file names
  (``<>:"/\\|?*``) become ``_``;
- leading dots and spaces, and trailing dots and spaces, are removed (no hidden files, no
  ``.`` or ``..``); what is left is cut to :data:`MAX_NAME_BYTES` bytes of UTF-8;
- an empty result becomes ``video``; Windows device names (``CON``, ``NUL``, ``COM1``, ...,
  with or without an extension) get a leading ``_``;
- names that then equal another one (ignoring case, as macOS and Windows do) get ``_2``,
  ``_3``, ... in order.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

MAX_NAME_BYTES = 120
_UNSAFE = re.compile('[\x00-\x1f\x7f<>:"/\\\\|?*\ud800-\udfff'
                     '\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]')
_RESERVED = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)


def safe_name(name: str) -> str:
    """One name mapped to a plain, portable file name (see the module docstring)."""
    text = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip(" .")
    text = text.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore").rstrip(" .")
    if not text:
        return "video"
    return f"_{text}" if _RESERVED.fullmatch(text) else text


def safe_names(names: Sequence[str]) -> list[str]:
    """Every name mapped by :func:`safe_name`, then made distinct ignoring case."""
    out: list[str] = []
    taken: set[str] = set()
    for raw in names:
        base = safe_name(raw)
        name, k = base, 1
        while name.casefold() in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name.casefold())
        out.append(name)
    return out
