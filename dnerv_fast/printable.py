"""Text from a file or a stranger made safe to print to a terminal.

Names and strings read from a .dnerv file (or any input) may hold escape sequences (colours,
cursor moves, OSC-8 hyperlinks, window titles), control characters, bidirectional overrides
that show text in another order than it is stored, or lone surrogates that cannot even be
encoded. :func:`printable` shows each such character as a visible escape (``\\x1b``,
``\\u202e``, ``\\ud800``), so what is printed is what the file holds, in the order it holds
it. ``info``, progress lines and every error line of the command line go through it.
"""
from __future__ import annotations

import unicodedata

# Control (Cc), format (Cf: bidi overrides and isolates, zero-width joiners, ...), surrogate
# (Cs) characters, and line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: object) -> str:
    """``str(text)`` with every control, format, surrogate and separator character escaped
    (a backslash is kept as it is: an escape shown is never a character interpreted)."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(_escape(ch) if unicodedata.category(ch) in _ESCAPED_CATEGORIES else ch
                   for ch in s)
