"""The one place the package opens an image: Pillow, limited to an explicit list of decoders.

Pillow picks a decoder by a file's content, not its name, and some of its decoders run
other programs: EPS and PostScript start Ghostscript (``gs``) on the file's code. Frame
folders, keyframes and every other image come from people the user may not know, so every
image goes through :func:`open_image`, which gives Pillow only the formats of
:data:`ALLOWED_FORMATS` to try: PNG, JPEG, WebP, BMP and TIFF, all decoded inside Pillow's
own libraries (libpng/zlib, libjpeg, libwebp, libtiff) with no external program. Anything
else, whatever its name says, is refused with :class:`UnsupportedImageError` before a
decoder for it runs.
"""
from __future__ import annotations

import struct
import warnings
import zlib
from typing import IO, Sequence

from PIL import Image, UnidentifiedImageError

from dnerv_fast.errors import CodecError

# Pillow format names. MPO (a JPEG with extra pictures) is what Pillow's JPEG decoder
# reports for such a file; it is the JPEG decoder, so it stays allowed.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
_REPORTED_AS = {"MPO": "JPEG"}

# What Pillow raises on broken image data (OSError also covers unknown formats).
PIL_DATA_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error,
                   zlib.error, Image.DecompressionBombError)


class UnsupportedImageError(CodecError, OSError):
    """An image is not one of the allowed formats (:data:`ALLOWED_FORMATS`)."""


def open_image(source: str | IO[bytes], formats: Sequence[str] = ALLOWED_FORMATS,
               what: str = "image") -> Image.Image:
    """Open ``source`` (a path or a binary file object) lazily, header only, with Pillow's
    decoders for ``formats`` (a subset of :data:`ALLOWED_FORMATS`) and no other.

    The caller checks the declared size before it loads pixels (Pillow's own
    decompression-bomb warning is silenced for that reason). Raises
    :class:`UnsupportedImageError` for any other format and lets Pillow's errors for broken
    data of an allowed format through (:data:`PIL_DATA_ERRORS`).
    """
    allowed = [f for f in formats if f in ALLOWED_FORMATS]
    if len(allowed) != len(formats) or not allowed:
        raise ValueError(f"image formats {list(formats)} are not all in {ALLOWED_FORMATS}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source, formats=allowed)
    except UnidentifiedImageError as e:
        raise UnsupportedImageError(
            f"{what} is not a {', '.join(allowed)} image (other formats are not opened)") from e
    if _REPORTED_AS.get(im.format, im.format) not in allowed:   # belt and braces
        im.close()
        raise UnsupportedImageError(f"{what} is a {im.format} image, which is not opened")
    return im
