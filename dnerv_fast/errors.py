"""Every error a user can cause, for the whole package: the bottom layer, imported by all.

Every failure caused by input, environment or interruption (a bad file or option, an
existing output, a checkpoint of another run) is a ``CodecError`` subclass, so the command
line prints its one-line message and exits non-zero without a traceback; anything else that
reaches :func:`dnerv_fast.cli.main` is reported as a bug.
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


class CheckpointError(CodecError, ValueError):
    """A checkpoint (a training checkpoint, or reference weights for a model) is missing,
    unreadable, or does not match the run or the model; the message names what differs."""


class OutputPathError(CodecError):
    """An output cannot be written where it was asked for (missing or read-only folder, a
    file where a folder should go, or outputs that would mix with other files)."""


class Interrupted(CodecError):
    """The user interrupted a command (Ctrl-C); the message says what was kept."""


class UsageError(CodecError):
    """An option's value is not allowed (the command line parsed, but asks for the impossible)."""
