"""Errors raised by the codec, video I/O and training code.

Every error a user can cause (bad file, bad option, existing output) is a ``CodecError``
subclass, so the command line can print its message and exit non-zero without a traceback.
"""


class CodecError(Exception):
    """Base class for all user-facing errors of the dnerv_fast codec."""


class VideoReadError(CodecError):
    """A video file or frame folder could not be read."""


class VideoWriteError(CodecError):
    """Decoded frames could not be written."""


class KeyframeCodecError(CodecError):
    """Unknown keyframe codec, bad quality setting, or a keyframe that does not decode."""


class QuantizationError(CodecError):
    """Bad quantisation settings."""


class BitstreamError(CodecError):
    """A .dnerv file is not valid: wrong magic, version, lengths or checksum."""


class OutputExistsError(CodecError):
    """The output path exists and overwriting was not asked for."""


class CheckpointError(CodecError):
    """A training checkpoint is missing, unreadable or does not match the run."""


class OutputPathError(CodecError):
    """An output cannot be written where it was asked for (missing or read-only folder, a
    file where a folder should go, or outputs that would mix with other files)."""


class Interrupted(CodecError):
    """The user interrupted a command (Ctrl-C); the message says what was kept."""


class UsageError(CodecError):
    """An option's value is not allowed (the command line parsed, but asks for the impossible)."""
